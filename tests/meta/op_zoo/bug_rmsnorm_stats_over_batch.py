"""RMS norm whose mean of squares was copied from a batch-norm layer and kept axis=0: one rms per
feature over the batch instead of one per row over its features. The backward follows the same
axis, consistently, so the output is what is wrong. Shows whenever the batch has more than one row
or a row more than one feature, i.e. always in practice.
"""
import numpy as np

EXPECTED = {"op": "rmsnorm", "tensor": "out", "slip": "stats_over_batch", "shows_when": "always"}


def rmsnorm_forward(x, gamma, rms_param):
    eps = x.dtype.type(rms_param.get("eps", 1e-5))
    ms = np.mean(x ** 2, axis=0, keepdims=True)
    rms = np.sqrt(ms + eps)
    xhat = x / rms
    return gamma * xhat, (xhat, rms, gamma)


def rmsnorm_backward(dout, cache):
    xhat, rms, gamma = cache
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (dxhat - xhat * np.mean(dxhat * xhat, axis=0, keepdims=True)) / rms
    return dx, dgamma
