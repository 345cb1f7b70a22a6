"""Softmax along the last axis: out = exp(x - max x) / sum exp(x - max x), row by row.

VJP (the Jacobian diag(p) - p p^T applied to dout): dx = p * (dout - sum(dout * p)) per row. Under a
uniform cotangent the exact dx is 0 (softmax's rows sum to 1). torch.softmax(x, -1); jax.nn.softmax.
"""
import numpy as np

from bpcheck.ops.algebra import floats
from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["SOFTMAX"]

FAMILIES = COMMON_FAMILIES + ("peaked", "one_column", "tied_rows")
SPAN = {"float32": 110.0, "float64": 760.0}       # a row spanning past exp's underflow


def _draw(rng, family, dtype):
    shape = (int(rng.integers(1, 5)), 1 if family == "one_column" else int(rng.integers(2, 7)))
    x = rng.standard_normal(shape) * 2.0
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
    return e / ns.sum(e, 1, keepdims=True)


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
