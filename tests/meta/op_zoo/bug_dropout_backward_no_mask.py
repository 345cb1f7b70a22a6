"""Inverted dropout whose backward remembers the 1/p scale but not the mask: dx = dout / p. Dropped
units, whose output is a constant zero, still pass gradient back as if they had been kept. Shows
whenever some unit is dropped (p < 1), i.e. always in training.
"""
import numpy as np

EXPECTED = {"op": "dropout", "tensor": "dx", "slip": "backward_no_mask",
            "shows_when": "always in training mode (p < 1, some unit dropped)"}


def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = None
    if mode == "train":
        mask = (np.random.rand(*x.shape) < p).astype(x.dtype) / x.dtype.type(p)
        out = x * mask
    else:
        out = x.copy()
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        dx = dout / dout.dtype.type(dropout_param["p"])
    else:
        dx = dout
    return dx
