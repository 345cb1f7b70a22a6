"""RMS norm that takes the per-row mean of squares without keepdims: rms has shape (N,), and
x / rms broadcasts it along the last axis, dividing column j by the rms of row j. With N != D that
is a broadcasting error; with a square batch (N == D) it runs and silently normalises by the wrong
rows' rms. The backward makes the same broadcast, so the output is the first thing that is wrong.
"""
import numpy as np

EXPECTED = {"op": "rmsnorm", "tensor": "out", "slip": "no_keepdims",
            "shows_when": "a square batch (N == D); otherwise a broadcasting error"}


def rmsnorm_forward(x, gamma, rms_param):
    eps = x.dtype.type(rms_param.get("eps", 1e-5))
    rms = np.sqrt(np.mean(x * x, axis=1) + eps)
    xhat = x / rms
    out = xhat * gamma
    return out, (xhat, rms, gamma)


def rmsnorm_backward(dout, cache):
    xhat, rms, gamma = cache
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (dxhat - xhat * np.mean(dxhat * xhat, axis=1)) / rms
    return dx, dgamma
