"""Cross-entropy with label smoothing that masks the one-hot target of an ignored row but not its
smoothing share: an ignored row still adds -eps/C sum log p to the loss and p - eps/C to dx (the mean
divides by the counted rows, as it should). Shows only with label smoothing and an ignored label
(padding tokens in a smoothed language-model loss); either alone is right.
"""
import numpy as np

EXPECTED = {"op": "cross_entropy", "tensor": "out", "slip": "smoothing_on_ignored",
            "shows_when": "label smoothing with an ignored label"}


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
    q[~valid] = eps / C                  # the ignored rows keep their smoothing share
    loss = -np.sum(q * logp, axis=1)
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = np.sum(loss)
    else:
        out = np.sum(loss) / int(np.count_nonzero(valid))
    return out, (logp, q, valid, reduction)


def cross_entropy_backward(dout, cache):
    logp, q, valid, reduction = cache
    dx = np.exp(logp) - q                # every row, the ignored ones included
    if reduction == "none":
        return dx * dout[:, None]
    if reduction == "mean":
        dx = dx / int(np.count_nonzero(valid))
    return dx * dout
