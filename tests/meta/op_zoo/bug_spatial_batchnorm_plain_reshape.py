"""Spatial batch norm that reuses the 2-d batch norm on x.reshape(-1, C), a plain reshape of the
(N, C, H, W) array, instead of moving the channels last first (x.transpose(0, 2, 3, 1)). The
reshape only regroups memory: each "column" then mixes several channels and positions, so the
statistics are taken over the wrong sets of entries. Forward and backward are consistent with each
other, so the output is what is wrong. Shows whenever C > 1 and H * W > 1.
"""
import numpy as np

EXPECTED = {"op": "spatial_batchnorm", "tensor": "out", "slip": "plain_reshape",
            "shows_when": "more than one channel and more than one position (C > 1, H * W > 1)"}


def _batchnorm_forward(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    xc = x - mu
    std = np.sqrt((xc ** 2).mean(axis=0) + eps)
    xhat = xc / std
    return gamma * xhat + beta, (xhat, gamma, std)


def _batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    out, cache = _batchnorm_forward(x.reshape(-1, C), gamma, beta, eps)
    return out.reshape(N, C, H, W), cache


def spatial_batchnorm_backward(dout, cache):
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = _batchnorm_backward(dout.reshape(-1, C), cache)
    return dx.reshape(N, C, H, W), dgamma, dbeta
