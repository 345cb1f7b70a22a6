"""Batch norm that adds eps to the standard deviation instead of the variance:
std = sqrt(var) + eps, where the definition is sqrt(var + eps). For a column with a spread of order
one the two agree to ~eps; for a nearly constant column, whose variance is comparable to eps (or
smaller), the output is scaled by up to 1/sqrt(eps) more than it should be, and dx with it.
"""
import numpy as np

EXPECTED = {"op": "batchnorm", "tensor": "out", "slip": "eps_outside_sqrt",
            "shows_when": "a feature whose variance is comparable to eps (a nearly constant column)"}


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = np.mean(x, axis=0)
    xc = x - mu
    std = np.sqrt(np.mean(xc * xc, axis=0)) + eps
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * np.mean(dxhat * xhat, axis=0)) / std
    return dx, dgamma, dbeta
