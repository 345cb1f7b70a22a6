"""Layer norm that adds eps to the standard deviation instead of the variance:
std = sqrt(var) + eps rather than sqrt(var + eps). For rows with a spread of order one the two agree
to ~eps; for a nearly constant row (variance comparable to eps, e.g. small activations or a padded
position) the output is blown up by up to 1/sqrt(eps), and dx with it.
"""
import numpy as np

EXPECTED = {"op": "layernorm", "tensor": "out", "slip": "eps_outside_sqrt",
            "shows_when": "a row whose variance is comparable to eps (a nearly constant row)"}


def layernorm_forward(x, gamma, beta, ln_param):
    eps = x.dtype.type(ln_param.get("eps", 1e-5))
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    std = np.sqrt((xc ** 2).mean(axis=1, keepdims=True)) + eps
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def layernorm_backward(dout, cache):
    xhat, gamma, std = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=1, keepdims=True)
          - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / std
    return dx, dgamma, dbeta
