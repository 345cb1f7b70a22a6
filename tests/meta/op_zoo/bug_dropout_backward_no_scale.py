"""Inverted dropout that keeps a boolean mask and scales by 1/p in the forward,
out = x * keep / p, but whose backward applies only the boolean mask, dx = dout * keep: the
gradient of every kept unit is p times too small. Shows whenever p < 1.
"""
import numpy as np

EXPECTED = {"op": "dropout", "tensor": "dx", "slip": "backward_no_scale",
            "shows_when": "a keep probability below one (p < 1)"}


def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    keep = None
    out = x.copy()
    if mode == "train":
        keep = np.random.rand(*x.shape) < p
        out = x * keep / x.dtype.type(p)
    return out, (dropout_param, keep)


def dropout_backward(dout, cache):
    dropout_param, keep = cache
    if dropout_param["mode"] == "train":
        return dout * keep
    return dout
