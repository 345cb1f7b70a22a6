"""Layer norm backward adapted from the compact batch-norm formula,
dx = (1/N) / std * (N dxhat - sum(dxhat) - xhat sum(dxhat xhat)), with the sums moved to axis 1
but N still read as x.shape[0]: the count of the averaged entries is D, the row length. The two
correction terms are weighted D/N times too much. Shows whenever N != D; a square batch hides it.
The forward, dgamma and dbeta are right.
"""
import numpy as np

EXPECTED = {"op": "layernorm", "tensor": "dx", "slip": "batch_size_divisor",
            "shows_when": "a batch size different from the feature count (N != D)"}


def layernorm_forward(x, gamma, beta, ln_param):
    eps = x.dtype.type(ln_param.get("eps", 1e-5))
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    std = np.sqrt((xc ** 2).mean(axis=1, keepdims=True) + eps)
    xhat = xc / std
    out = gamma * xhat + beta
    return out, (xhat, gamma, std)


def layernorm_backward(dout, cache):
    xhat, gamma, std = cache
    N = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    dx = (1.0 / N) / std * (N * dxhat - np.sum(dxhat, axis=1, keepdims=True)
                            - xhat * np.sum(dxhat * xhat, axis=1, keepdims=True))
    return dx, dgamma, dbeta
