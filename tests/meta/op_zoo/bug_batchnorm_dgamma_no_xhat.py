"""Batch norm whose dgamma line was copied from dbeta's and never finished: dgamma = sum(dout),
missing the xhat factor (out = gamma * xhat + beta, so dgamma = sum(dout * xhat)). dx and dbeta are
right. Shows always.
"""
import numpy as np

EXPECTED = {"op": "batchnorm", "tensor": "dgamma", "slip": "dgamma_no_xhat", "shows_when": "always"}


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = x.mean(axis=0)
    xc = x - mu
    std = np.sqrt((xc ** 2).mean(axis=0) + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    dbeta = dout.sum(axis=0)
    dgamma = dout.sum(axis=0)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx, dgamma, dbeta
