"""RMS norm that adds eps to the root instead of under it: rms = sqrt(mean(x^2)) + eps rather than
sqrt(mean(x^2) + eps). Rows of ordinary size cannot tell the difference; a row of tiny entries, whose
mean square is comparable to eps, is scaled up by as much as 1/sqrt(eps) more than it should be.
The backward is the textbook formula fed the cached rms, so the output is the first thing that is
wrong, and dx follows it.
"""
import numpy as np

EXPECTED = {"op": "rmsnorm", "tensor": "out", "slip": "eps_outside_sqrt",
            "shows_when": "a row whose mean square is comparable to eps (tiny entries)"}


def rmsnorm_forward(x, gamma, rms_param):
    eps = x.dtype.type(rms_param.get("eps", 1e-5))
    rms = np.sqrt(np.mean(x * x, axis=1, keepdims=True)) + eps
    xhat = x / rms
    return xhat * gamma, (xhat, rms, gamma)


def rmsnorm_backward(dout, cache):
    xhat, rms, gamma = cache
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dx = (dxhat - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / rms
    return dx, dgamma
