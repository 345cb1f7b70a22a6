"""Affine layer whose backward returns dx in the flattened (N, D) shape the product was taken in,
not reshaped back to x's shape (N, d1, ..., dk). The values are right; the shape is not. Shows for
any x with more than one feature axis (an image batch fed straight into a fully connected layer):
the next layer down receives an (N, D) gradient for an (N, C, H, W) input. A 2-d x is unaffected.
"""
import numpy as np

EXPECTED = {"op": "affine", "tensor": "dx", "slip": "dx_not_reshaped",
            "shows_when": "x with more than one feature axis, (N, d1, ..., dk) with k > 1"}


def affine_forward(x, w, b):
    x_flat = x.reshape(x.shape[0], -1)
    out = x_flat @ w + b
    return out, (x_flat, w)


def affine_backward(dout, cache):
    x_flat, w = cache
    dx = dout @ w.T
    dw = x_flat.T @ dout
    db = np.sum(dout, axis=0)
    return dx, dw, db
