"""Group norm backward that starts the dx chain from dout instead of dout * gamma: the scale applied
after normalising is forgotten on the way back (dxhat = dout). Invisible while gamma is still at its
initial value of ones, which is how a freshly built layer is usually checked; shows as soon as gamma
has been trained away from 1. The forward, dgamma and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "groupnorm", "tensor": "dx", "slip": "dx_without_gamma",
            "shows_when": "gamma different from ones"}


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = x.dtype.type(gn_param.get("eps", 1e-5))
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    std = np.sqrt(xg.var(axis=2, keepdims=True) + eps)
    xhat = ((xg - mu) / std).reshape(N, C, H, W)
    out = gamma * xhat + beta
    return out, (xhat, std, G)


def spatial_groupnorm_backward(dout, cache):
    xhat, std, G = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dxhat = dout.reshape(N, G, -1)
    xh = xhat.reshape(N, G, -1)
    dx = (dxhat - dxhat.mean(axis=2, keepdims=True) - xh * (dxhat * xh).mean(axis=2, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
