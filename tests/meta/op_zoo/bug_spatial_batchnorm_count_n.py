"""Spatial batch norm computed on the 4-d array with reductions over (0, 2, 3), whose backward took
the compact batch-norm formula with N = dout.shape[0] as the number of entries averaged; that number
is N * H * W here. dx = (N dxhat - sum(dxhat) - xhat sum(dxhat xhat)) / (N std) then weights the two
correction terms H * W times too heavily. The forward, dgamma and dbeta are right. Shows whenever
H * W > 1.
"""
import numpy as np

EXPECTED = {"op": "spatial_batchnorm", "tensor": "dx", "slip": "count_n",
            "shows_when": "more than one position per channel (H * W > 1)"}


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    axes = (0, 2, 3)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    g = gamma.reshape(1, -1, 1, 1)
    out = g * xhat + beta.reshape(1, -1, 1, 1)
    return out, (xhat, g, std)


def spatial_batchnorm_backward(dout, cache):
    xhat, g, std = cache
    axes = (0, 2, 3)
    N = dout.shape[0]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dxhat = dout * g
    dx = (N * dxhat - dxhat.sum(axis=axes, keepdims=True)
          - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True)) / (N * std)
    return dx, dgamma, dbeta
