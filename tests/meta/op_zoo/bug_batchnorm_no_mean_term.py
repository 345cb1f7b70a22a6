"""Batch norm backward derived by staged backprop (xhat -> var -> mean -> x) that stops after the
variance: dx = dxhat/std + dvar * 2 (x - mu)/N. The path through the batch mean, dmu/N with
dmu = -sum(dxhat)/std, is left out (its dvar part is zero, and the rest was taken to vanish too), so
dx misses the -mean(dxhat)/std correction. Shows for any upstream gradient whose columns (times
gamma) do not average to zero, i.e. always in practice. dgamma and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "batchnorm", "tensor": "dx", "slip": "no_mean_term", "shows_when": "always"}


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = np.mean(x, axis=0)
    xc = x - mu
    var = np.mean(xc ** 2, axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xc, std, xhat, gamma)


def batchnorm_backward(dout, cache):
    xc, std, xhat, gamma = cache
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dvar = np.sum(dxhat * xc, axis=0) * -0.5 / std ** 3
    dx = dxhat / std + dvar * 2 * xc / N
    return dx, dgamma, dbeta
