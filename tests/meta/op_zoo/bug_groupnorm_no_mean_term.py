"""Group norm backward missing the centring term: dx = (dxhat - xhat * mean(dxhat * xhat)) / std,
without the -mean(dxhat) over the group that the dependence of the group mean on every entry adds.
Shows whenever dout * gamma does not average to zero over a group, i.e. always in practice. The
forward, dgamma and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "groupnorm", "tensor": "dx", "slip": "no_mean_term", "shows_when": "always"}


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = x.dtype.type(gn_param.get("eps", 1e-5))
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    xc = xg - xg.mean(axis=2, keepdims=True)
    std = np.sqrt((xc ** 2).mean(axis=2, keepdims=True) + eps)
    xhat = (xc / std).reshape(N, C, H, W)
    out = gamma * xhat + beta
    return out, (xhat, gamma, std, G)


def spatial_groupnorm_backward(dout, cache):
    xhat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, G, -1)
    xh = xhat.reshape(N, G, -1)
    dx = (dxhat - xh * (dxhat * xh).mean(axis=2, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
