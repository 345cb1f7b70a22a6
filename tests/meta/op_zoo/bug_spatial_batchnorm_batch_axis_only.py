"""Spatial batch norm written as the 2-d batch norm with the reductions left at axis=0: the mean and
variance are taken over the batch only, giving one statistic per (channel, row, column) instead of
one per channel over (N, H, W). Backward is consistent with that forward, so the output is what is
wrong. Shows whenever a channel has more than one position (H * W > 1).
"""
import numpy as np

EXPECTED = {"op": "spatial_batchnorm", "tensor": "out", "slip": "batch_axis_only",
            "shows_when": "more than one position per channel (H * W > 1)"}


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = np.mean(x, axis=0)
    xc = x - mu
    std = np.sqrt(np.mean(xc ** 2, axis=0) + eps)
    xhat = xc / std
    g = gamma.reshape(1, -1, 1, 1)
    out = g * xhat + beta.reshape(1, -1, 1, 1)
    return out, (xhat, g, std)


def spatial_batchnorm_backward(dout, cache):
    xhat, g, std = cache
    dbeta = np.sum(dout, axis=(0, 2, 3))
    dgamma = np.sum(dout * xhat, axis=(0, 2, 3))
    dxhat = dout * g
    dx = (dxhat - np.mean(dxhat, axis=0) - xhat * np.mean(dxhat * xhat, axis=0)) / std
    return dx, dgamma, dbeta
