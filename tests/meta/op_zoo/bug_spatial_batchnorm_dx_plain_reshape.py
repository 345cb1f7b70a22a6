"""Spatial batch norm that moves the channels last correctly on the way in (transpose to
(N, H, W, C), then reshape to (N*H*W, C)), but on the way back reshapes the flat dx straight to
(N, C, H, W) without the inverse transpose. dx then has the right shape and the right values in
the wrong places. The forward, dgamma and dbeta are right. Shows whenever C > 1 and H * W > 1.
"""
import numpy as np

EXPECTED = {"op": "spatial_batchnorm", "tensor": "dx", "slip": "dx_plain_reshape",
            "shows_when": "more than one channel and more than one position (C > 1, H * W > 1)"}


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    eps = x.dtype.type(bn_param.get("eps", 1e-5))
    x2 = x.transpose(0, 2, 3, 1).reshape(-1, C)
    mu = x2.mean(axis=0)
    std = np.sqrt(x2.var(axis=0) + eps)
    xhat = (x2 - mu) / std
    out = (gamma * xhat + beta).reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, (xhat, gamma, std)


def spatial_batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    N, C, H, W = dout.shape
    dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dbeta = dout2.sum(axis=0)
    dgamma = (dout2 * xhat).sum(axis=0)
    dxhat = dout2 * gamma
    dx = (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
