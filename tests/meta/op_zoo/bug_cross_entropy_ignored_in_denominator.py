"""Cross-entropy that zeroes the loss of rows whose label is ignore_index but still averages over
all N rows: the "mean" is divided by N instead of the number of counted rows, in the forward and,
consistently, in the backward. Shows with reduction="mean" and at least one ignored label (padding
tokens); without ignored rows the two denominators agree.
"""
import numpy as np

EXPECTED = {"op": "cross_entropy", "tensor": "out", "slip": "ignored_in_denominator",
            "shows_when": "an ignored label with reduction 'mean'"}


def cross_entropy_forward(x, y, ce_param):
    ignore = ce_param.get("ignore_index", -100)
    eps = x.dtype.type(ce_param.get("label_smoothing", 0.0))
    reduction = ce_param.get("reduction", "mean")
    N, C = x.shape
    shifted = x - np.max(x, axis=1, keepdims=True)
    logp = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    valid = y != ignore
    target = np.where(valid, y, 0)
    q = np.full_like(x, eps / C)
    q[np.arange(N), target] += 1 - eps
    loss = -np.sum(q * logp, axis=1) * valid
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = np.sum(loss)
    else:
        out = np.mean(loss)
    return out, (logp, q, valid, reduction)


def cross_entropy_backward(dout, cache):
    logp, q, valid, reduction = cache
    dx = (np.exp(logp) - q) * valid[:, None]
    if reduction == "none":
        return dx * dout[:, None]
    if reduction == "mean":
        dx = dx / dx.shape[0]
    return dx * dout
