"""Batch norm computing the batch variance in one pass, var = E[x^2] - E[x]^2. The formula is exact in
real arithmetic, but in float32 it cancels catastrophically when the mean is large next to the
spread: at mean/std ~ 1e4 both terms are ~1e8 times the variance and agree to every one of float32's
24 bits, so var comes out as rounding noise (or negative: NaN). The output, and dx with it, is then
wrong. Float64, or inputs of modest mean, hide it.
"""
import numpy as np

EXPECTED = {"op": "batchnorm", "tensor": "out", "slip": "var_cancellation",
            "shows_when": "a large mean with a small spread in float32 (mean/std ~ 1e4)"}


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = np.mean(x, axis=0)
    var = np.mean(x * x, axis=0) - mu * mu
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (N * dxhat - np.sum(dxhat, axis=0) - xhat * np.sum(dxhat * xhat, axis=0)) / (N * std)
    return dx, dgamma, dbeta
