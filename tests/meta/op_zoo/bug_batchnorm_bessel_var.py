"""Batch norm that normalises with the unbiased (Bessel-corrected) batch variance, sum((x-mu)^2)/(N-1)
(np.var(ddof=1), torch.var's default), where training-mode batch norm uses the biased 1/N variance.
Forward and backward are consistent with each other, so the output itself is off: xhat is scaled by
about sqrt((N-1)/N), and dx with it. Shows always; largest for small batches (13% at N = 4).
"""
import numpy as np

EXPECTED = {"op": "batchnorm", "tensor": "out", "slip": "bessel_var",
            "shows_when": "always; largest for small batches"}


def batchnorm_forward(x, gamma, beta, bn_param):
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)
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
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).sum(axis=0) / (N - 1)) / std
    return dx, dgamma, dbeta
