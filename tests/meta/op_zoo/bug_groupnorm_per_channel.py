"""Group norm whose grouped view was written x.reshape(N, C, -1) instead of x.reshape(N, G, -1):
the statistics are taken per channel (instance norm), not over the C/G channels of each group.
The backward uses the same view, consistently, so the output is what is wrong. Shows whenever a
group holds more than one channel (G < C); with G == C group norm is instance norm and it is right.
"""
import numpy as np

EXPECTED = {"op": "groupnorm", "tensor": "out", "slip": "per_channel",
            "shows_when": "groups of more than one channel (G < C)"}


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = x.dtype.type(gn_param.get("eps", 1e-5))
    N, C, H, W = x.shape
    xg = x.reshape(N, C, -1)
    mu = xg.mean(axis=2, keepdims=True)
    xc = xg - mu
    std = np.sqrt((xc ** 2).mean(axis=2, keepdims=True) + eps)
    xhat = (xc / std).reshape(N, C, H, W)
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def spatial_groupnorm_backward(dout, cache):
    xhat, gamma, std = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, C, -1)
    xh = xhat.reshape(N, C, -1)
    dx = (dxhat - dxhat.mean(axis=2, keepdims=True) - xh * (dxhat * xh).mean(axis=2, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
