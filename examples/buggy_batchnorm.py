"""Batch normalisation, CS231n style, with the slip public reports show most: the backward pass drops
the mean(dxhat) term (the "sum of dy" correction). Its forward and dgamma, dbeta are right.

    bpcheck op batchnorm --layers examples/buggy_batchnorm.py
"""
import numpy as np


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def batchnorm_backward(dout, cache):
    xhat, gamma, inv_std = cache
    dxhat = dout * gamma
    dx = inv_std * (dxhat - xhat * (dxhat * xhat).mean(axis=0))   # the - dxhat.mean(axis=0) term is missing
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)
