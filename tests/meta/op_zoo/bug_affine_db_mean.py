"""Affine layer whose bias gradient averages the upstream gradient over the batch instead of
summing it: db = dout.mean(axis=0). The forward adds b to every row, so every row contributes its
whole dout to db; the mean makes db N times too small. dx and dw are right. Shows for any batch of
more than one row; with N = 1 the mean and the sum agree.
"""
import numpy as np

EXPECTED = {"op": "affine", "tensor": "db", "slip": "db_mean",
            "shows_when": "a batch of more than one row (N > 1)"}


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.mean(dout, axis=0)
    return dx, dw, db
