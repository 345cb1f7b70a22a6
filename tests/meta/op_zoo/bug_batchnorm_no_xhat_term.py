"""Batch norm backward that treats the batch standard deviation as a constant: it centres the
gradient through the mean, dx = (dxhat - mean(dxhat)) / std, but drops the path through the
variance, the -xhat * mean(dxhat * xhat) / std term. Shows whenever dout * gamma is correlated
with xhat within a column, i.e. always in practice. dgamma and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "batchnorm", "tensor": "dx", "slip": "no_xhat_term", "shows_when": "always"}


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dmu = -np.sum(dxhat / std, axis=0)
    dx = dxhat / std + dmu / N
    return dx, dgamma, dbeta
