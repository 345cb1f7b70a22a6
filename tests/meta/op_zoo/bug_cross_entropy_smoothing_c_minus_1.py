"""Cross-entropy with label smoothing spread over the other classes only: the target gets 1 - eps and
each of the C - 1 non-targets eps / (C - 1). The contract (PyTorch's definition) mixes with the
uniform distribution: every class gets eps / C and the target 1 - eps + eps / C. Forward and
backward agree with each other, so the loss is what is wrong. Shows whenever label_smoothing > 0.
"""
import numpy as np

EXPECTED = {"op": "cross_entropy", "tensor": "out", "slip": "smoothing_c_minus_1",
            "shows_when": "label smoothing above zero"}


def cross_entropy_forward(x, y, ce_param):
    ignore = ce_param.get("ignore_index", -100)
    eps = x.dtype.type(ce_param.get("label_smoothing", 0.0))
    reduction = ce_param.get("reduction", "mean")
    N, C = x.shape
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    keep = y != ignore
    onehot = np.zeros_like(x)
    onehot[np.arange(N)[keep], y[keep]] = 1
    q = onehot * (1 - eps) + (1 - onehot) * eps / (C - 1)
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
        return dx * dout[:, None]
    if reduction == "mean":
        dx = dx / keep.sum(dtype=dx.dtype)
    return dx * dout
