"""Layer norm that reduces over axis 1 everywhere, including the parameter gradients:
dgamma = sum(dout * xhat, axis=1) and dbeta = sum(dout, axis=1). gamma and beta are per feature and
shared by the rows, so their gradients sum over the batch, axis 0. The result is one value per row,
shape (N,): a shape error unless N == D, where it silently returns the row sums. dx is right.
"""
import numpy as np

EXPECTED = {"op": "layernorm", "tensor": "dgamma", "slip": "param_grads_axis",
            "shows_when": "always: dgamma and dbeta come back (N,), a shape error unless N == D, where the values are wrong"}


def layernorm_forward(x, gamma, beta, ln_param):
    eps = x.dtype.type(ln_param.get("eps", 1e-5))
    mu = np.mean(x, axis=1, keepdims=True)
    var = np.var(x, axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    xhat = (x - mu) / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def layernorm_backward(dout, cache):
    xhat, gamma, std = cache
    dgamma = np.sum(dout * xhat, axis=1)
    dbeta = np.sum(dout, axis=1)
    dxhat = dout * gamma
    dx = (dxhat - np.mean(dxhat, axis=1, keepdims=True)
          - xhat * np.mean(dxhat * xhat, axis=1, keepdims=True)) / std
    return dx, dgamma, dbeta
