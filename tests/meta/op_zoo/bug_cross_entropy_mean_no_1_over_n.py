"""Cross-entropy whose forward averages the loss over the counted rows but whose backward returns
softmax - target for every row without the 1/N of the mean: the gradient of the summed loss, N times
too large. Shows with reduction="mean" over more than one counted row; reduction="sum", or a single
row, is right.
"""
import numpy as np

EXPECTED = {"op": "cross_entropy", "tensor": "dx", "slip": "mean_no_1_over_n",
            "shows_when": "reduction 'mean' over more than one counted row"}


def cross_entropy_forward(x, y, ce_param):
    ignore = ce_param.get("ignore_index", -100)
    eps = x.dtype.type(ce_param.get("label_smoothing", 0.0))
    reduction = ce_param.get("reduction", "mean")
    N, C = x.shape
    z = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
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
    if reduction == "none":
        dx = dx * dout[:, None]
    else:
        dx = dx * dout
    return dx
