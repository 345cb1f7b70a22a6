"""Group norm whose backward works in the grouped view (N, G, C/G * H * W) throughout and reduces
dgamma there: sum over the batch and the group's entries gives one value per group, which is then
repeated to the C/G channels of the group. gamma is per channel, so its gradient must not sum across
the channels of a group. dgamma has the right shape (1, C, 1, 1) and wrong values whenever a group
holds more than one channel (G < C). dx and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "groupnorm", "tensor": "dgamma", "slip": "dgamma_per_group",
            "shows_when": "groups of more than one channel (G < C)"}


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = x.dtype.type(gn_param.get("eps", 1e-5))
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    mu = np.mean(xg, axis=2, keepdims=True)
    std = np.sqrt(np.var(xg, axis=2, keepdims=True) + eps)
    xhat = ((xg - mu) / std).reshape(N, C, H, W)
    out = gamma * xhat + beta
    return out, (xhat, gamma, std, G)


def spatial_groupnorm_backward(dout, cache):
    xhat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)
    dout_g = dout.reshape(N, G, -1)
    xhat_g = xhat.reshape(N, G, -1)
    dgamma = np.sum(dout_g * xhat_g, axis=(0, 2))
    dgamma = np.repeat(dgamma, C // G).reshape(1, C, 1, 1)
    dxhat = (dout * gamma).reshape(N, G, -1)
    dx = (dxhat - np.mean(dxhat, axis=2, keepdims=True)
          - xhat_g * np.mean(dxhat * xhat_g, axis=2, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta
