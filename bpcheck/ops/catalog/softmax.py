"""Softmax and log-softmax along the last axis, row by row.

softmax:     out = p = exp(x - max x) / sum exp(x - max x); VJP (the Jacobian diag(p) - p p^T applied
             to dout): dx = p * (dout - sum(dout * p)). Under a uniform cotangent the exact dx is 0
             (softmax's rows sum to 1). torch.softmax(x, -1); jax.nn.softmax.
log_softmax: out = x - max x - log sum exp(x - max x); VJP (the Jacobian I - 1 p^T applied to dout):
             dx = dout - p sum(dout). Where a row spans past exp's underflow, p rounds to 0 and
             log(softmax(x)) is -inf while the definition is finite (family ``peaked``).
Family ``large_logits``: rows at +-760 (float64; +-110 in float32), where exp without the row's max
subtracted overflows and a shift by the batch's maximum underflows a whole row.
             torch.log_softmax(x, -1); jax.nn.log_softmax.
"""
import numpy as np

from bpcheck.ops.algebra import floats
from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["SOFTMAX", "LOG_SOFTMAX"]

FAMILIES = COMMON_FAMILIES + ("peaked", "one_column", "tied_rows", "large_logits")
SPAN = {"float32": 110.0, "float64": 760.0}       # a row spanning past exp's underflow


def large_logits(rng, n, c, dtype):
    """Logits (n >= 2 rows) whose rows sit at offsets +SPAN and -SPAN (alternating from a drawn first
    sign), each spread by a unit normal: exp of a row without its max subtracted overflows, and a row
    shifted by the *batch's* maximum underflows to an all-zero sum (log 0)."""
    sign = rng.choice([-1.0, 1.0])
    offsets = SPAN[dtype] * sign * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return offsets[:, None] + rng.standard_normal((n, c))


def _draw(rng, family, dtype):
    shape = (int(rng.integers(2 if family == "large_logits" else 1, 5)),
             1 if family == "one_column" else int(rng.integers(2, 7)))
    x = rng.standard_normal(shape) * 2.0
    if family == "large_logits":
        x = large_logits(rng, *shape, dtype)
    if family == "peaked":                                  # each row from 0 down to past exp's underflow
        x = rng.uniform(-SPAN[dtype], 0.0, size=shape)
        x[:, 0], x[:, -1] = 0.0, -SPAN[dtype]
    if family == "tied_rows":
        x[:] = x[:, :1]
    return Draw({"x": x.astype(dtype)})


def _probabilities(ns, x):
    rows = np.arange(x.shape[0])
    peak = x[rows, np.argmax(floats(x), axis=1)].reshape(-1, 1)     # an exact selection
    e = ns.exp(x - peak)
    total = ns.sum(e, 1, keepdims=True)
    # exp(x - logsumexp(x)) is as correct: the exponent's rounding, u |x|, is what large logits show
    return ns.either(e / total, ns.exp(x - (peak + ns.log(total))))


def _forward(ns, a, c, h):
    return _probabilities(ns, a["x"])


def _vjp(ns, a, c, h, dout):
    p = _probabilities(ns, a["x"])
    return {"x": p * (dout - ns.sum(dout * p, 1, keepdims=True))}


SOFTMAX = Op(
    name="softmax",
    definition="softmax along the last axis of x (N, C): exp(x - max) / sum exp(x - max), row by row",
    inputs=("x",), forward=_forward, vjp=_vjp, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.softmax(a["x"], -1),
    jax=lambda jax, a, c, h: jax.nn.softmax(a["x"], axis=-1),
    slips=(Slip("no_rowsum_term", "softmax backward without the rowsum(dout * p) term: dx = p * dout",
                lambda ns, a, c, h, dout: {"x": _probabilities(ns, a["x"]) * dout}),))


def _log_forward(ns, a, c, h):
    x = a["x"]
    rows = np.arange(x.shape[0])
    peak = x[rows, np.argmax(floats(x), axis=1)].reshape(-1, 1)               # an exact selection
    shifted = x - peak
    total = ns.sum(ns.exp(shifted), 1, keepdims=True)
    return ns.either(shifted - ns.log(total), x - (peak + ns.log(total)))     # or x - logsumexp(x)


def _log_vjp(ns, a, c, h, dout):
    return {"x": dout - _probabilities(ns, a["x"]) * ns.sum(dout, 1, keepdims=True)}


LOG_SOFTMAX = Op(
    name="log_softmax",
    definition="log-softmax along the last axis of x (N, C): x - max - log sum exp(x - max), row by row",
    inputs=("x",), forward=_log_forward, vjp=_log_vjp, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.log_softmax(a["x"], -1),
    jax=lambda jax, a, c, h: jax.nn.log_softmax(a["x"], axis=-1),
    slips=(Slip("p_times_dout", "log-softmax backward with p * dout where p * sum(dout) belongs: "
                "dx = dout - p * dout",
                lambda ns, a, c, h, dout: {"x": dout - _probabilities(ns, a["x"]) * dout}),
           Slip("cross_entropy_gradient", "dx = dout - p: the gradient of cross-entropy's one-hot case, "
                "the cotangent's row sum taken as 1",
                lambda ns, a, c, h, dout: {"x": dout - _probabilities(ns, a["x"])}),
           Slip("diagonal_only", "dx = dout * (1 - p): only the Jacobian's diagonal",
                lambda ns, a, c, h, dout: {"x": dout * (1 - _probabilities(ns, a["x"]))})))
