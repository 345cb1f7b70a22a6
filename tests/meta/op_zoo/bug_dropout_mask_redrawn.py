"""Dropout that saves memory by not caching the mask and drawing it again in the backward, but
without re-seeding the generator: by then np.random has moved on past the forward's draw, so the
backward's mask is a different random mask. dx is masked with units the forward did not drop.
Shows always in training mode with p < 1.
"""
import numpy as np

EXPECTED = {"op": "dropout", "tensor": "dx", "slip": "mask_redrawn",
            "shows_when": "always in training mode (p < 1)"}


def _mask(shape, p, dtype):
    return (np.random.rand(*shape) < p).astype(dtype) / dtype.type(p)


def dropout_forward(x, dropout_param):
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    if dropout_param["mode"] == "train":
        out = x * _mask(x.shape, dropout_param["p"], x.dtype)
    else:
        out = x.copy()
    return out, dropout_param


def dropout_backward(dout, cache):
    dropout_param = cache
    if dropout_param["mode"] == "train":
        return dout * _mask(dout.shape, dropout_param["p"], dout.dtype)
    return dout
