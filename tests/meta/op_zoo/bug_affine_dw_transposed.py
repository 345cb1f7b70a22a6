"""Affine layer whose weight gradient is written the PyTorch way, dw = dout.T @ x (nn.Linear keeps
its weight as (out_features, in_features)), while this layer's w is (D, M) and its forward is
x @ w: the gradient comes back as (M, D), the transpose. With D != M that is a shape error; with a
square w (D == M) it silently returns the transposed values. dx and db are right.
"""
import numpy as np

EXPECTED = {"op": "affine", "tensor": "dw", "slip": "dw_transposed",
            "shows_when": "always: a shape error unless D == M, where dw's values come back transposed"}


def affine_forward(x, w, b):
    N = x.shape[0]
    out = np.dot(x.reshape(N, -1), w) + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    N = x.shape[0]
    dx = np.dot(dout, w.T).reshape(x.shape)
    dw = np.dot(dout.T, x.reshape(N, -1))
    db = np.sum(dout, axis=0)
    return dx, dw, db
