"""Dropout that reads p as the probability of dropping a unit (PyTorch's nn.Dropout(p)) where this
layer's p is the probability of keeping one: keep = rand >= p, scaled by 1/(1 - p). Forward and
backward agree with each other, so the output is what is wrong: the complementary set of units is
kept, at the wrong scale. Shows always in training mode (even at p = 0.5 the kept set differs).
"""
import numpy as np

EXPECTED = {"op": "dropout", "tensor": "out", "slip": "p_as_drop_probability",
            "shows_when": "always in training mode"}


def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = None
    if mode == "train":
        mask = (np.random.rand(*x.shape) >= p).astype(x.dtype) / x.dtype.type(1 - p)
        out = x * mask
    else:
        out = x
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        return dout * mask
    return dout
