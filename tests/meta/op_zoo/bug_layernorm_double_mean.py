"""Layer norm backward by staged backprop that subtracts the mean of the gradient twice: the
gradient reaching xc = x - mu is centred on the spot ("xc has its mean removed"), and then the path
through mu, dmu / D = -mean(dxhat) / std, is added on top of it. dx ends up with an extra
-mean(dxhat) / std per row. Shows whenever a row of dout * gamma does not average to zero, i.e.
always in practice. dgamma and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "layernorm", "tensor": "dx", "slip": "double_mean", "shows_when": "always"}


def layernorm_forward(x, gamma, beta, ln_param):
    eps = x.dtype.type(ln_param.get("eps", 1e-5))
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xc, std, xhat, gamma)


def layernorm_backward(dout, cache):
    xc, std, xhat, gamma = cache
    D = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dxc = dxhat / std
    dxc -= dxc.mean(axis=1, keepdims=True)
    dvar = -0.5 * (dxhat * xc).sum(axis=1, keepdims=True) / std ** 3
    dmu = -(dxhat / std).sum(axis=1, keepdims=True)
    dx = dxc + dvar * 2 * xc / D + dmu / D
    return dx, dgamma, dbeta
