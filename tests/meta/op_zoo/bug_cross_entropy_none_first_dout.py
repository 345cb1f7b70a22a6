"""Cross-entropy whose backward reads the upstream gradient as the scalar it is for a "mean" or
"sum" loss, np.ravel(dout)[0]. reduction="none" was added to the forward later: its upstream is a
vector of N values, one per row, and every row's gradient is scaled by the first one. Shows with
reduction="none" and an upstream gradient that is not the same for every row (a weighted loss).
"""
import numpy as np

EXPECTED = {"op": "cross_entropy", "tensor": "dx", "slip": "none_first_dout",
            "shows_when": "reduction 'none' with an upstream gradient that differs between rows"}


def cross_entropy_forward(x, y, ce_param):
    ignore = ce_param.get("ignore_index", -100)
    eps = x.dtype.type(ce_param.get("label_smoothing", 0.0))
    reduction = ce_param.get("reduction", "mean")
    N, C = x.shape
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    keep = y != ignore
    q = np.full_like(x, eps / C)
    q[np.arange(N)[keep], y[keep]] += 1 - eps
    loss = -(q * logp).sum(axis=1) * keep
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    else:
        out = loss.sum() / keep.sum(dtype=loss.dtype)
    return out, (logp, q, keep, reduction)


def cross_entropy_backward(dout, cache):
    logp, q, keep, reduction = cache
    dx = (np.exp(logp) - q) * keep[:, None]
    scale = np.ravel(dout)[0]
    if reduction == "mean":
        scale = scale / keep.sum(dtype=dx.dtype)
    return dx * scale
