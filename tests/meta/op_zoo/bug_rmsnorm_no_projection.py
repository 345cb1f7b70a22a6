"""RMS norm backward that differentiates x / rms as if rms were a constant: dx = dxhat / rms. The
rms depends on every entry of its row, which adds -x * mean(dxhat * x) / rms^3 (the projection of
dxhat onto x). Shows whenever dout * gamma is not orthogonal to its row of x, i.e. always in
practice. dgamma is right.
"""
import numpy as np

EXPECTED = {"op": "rmsnorm", "tensor": "dx", "slip": "no_projection", "shows_when": "always"}


def rmsnorm_forward(x, gamma, rms_param):
    eps = x.dtype.type(rms_param.get("eps", 1e-5))
    rms = np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps)
    xhat = x / rms
    out = xhat * gamma
    return out, (xhat, rms, gamma)


def rmsnorm_backward(dout, cache):
    xhat, rms, gamma = cache
    dgamma = np.sum(dout * xhat, axis=0)
    dx = dout * gamma / rms
    return dx, dgamma
