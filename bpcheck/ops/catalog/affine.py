"""Affine (fully connected) layer on N-d input: out = x.reshape(N, D) w + b (CS231n's affine_forward).

VJP: dx = (dout w^T).reshape(x.shape), dw = x2^T dout, db = sum_n dout, with x2 = x.reshape(N, D).
torch: x2 @ w + b via torch.nn.functional.linear(x2, w.T, b); JAX: jnp.matmul.
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip
from bpcheck.ops.running import AFFINE as RUNNING

__all__ = ["AFFINE"]

FAMILIES = COMMON_FAMILIES + ("batch1", "nd_input", "large_fan_in")


def _draw(rng, family, dtype):
    n = 1 if family == "batch1" else int(rng.integers(2, 6))
    tail = (tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(2, 4)))) if family == "nd_input"
            else (int(rng.integers(64, 160)),) if family == "large_fan_in" else (int(rng.integers(1, 7)),))
    d, m = int(np.prod(tail)), int(rng.integers(1, 6))
    return Draw({"x": rng.standard_normal((n,) + tail).astype(dtype),
                 "w": (rng.standard_normal((d, m)) / np.sqrt(d)).astype(dtype),
                 "b": rng.standard_normal(m).astype(dtype)})


def _flat(x):
    return x.reshape(x.shape[0], -1)


def _forward(ns, a, c, h):
    return ns.matmul(_flat(a["x"]), a["w"]) + a["b"].reshape(1, -1)


def _vjp(ns, a, c, h, dout):
    return {"x": ns.matmul(dout, a["w"].T).reshape(a["x"].shape),
            "w": ns.matmul(_flat(a["x"]).T, dout),
            "b": ns.sum(dout, 0)}


def _shrink(draw):
    x = draw.inputs["x"]
    for i in range(x.shape[0] if x.shape[0] > 1 else 0):
        keep = [j for j in range(x.shape[0]) if j != i]
        yield Draw({**draw.inputs, "x": x[keep]}, draw.constants, draw.hyper)
    m = draw.inputs["w"].shape[1]
    for i in range(m if m > 1 else 0):
        keep = [j for j in range(m) if j != i]
        yield Draw({**draw.inputs, "w": draw.inputs["w"][:, keep], "b": draw.inputs["b"][keep]},
                   draw.constants, draw.hyper)


AFFINE = Op(
    name="affine",
    definition="affine layer, x (N, d1..dk), w (D, M), b (M,): out = x.reshape(N, D) w + b",
    inputs=("x", "w", "b"), forward=_forward, vjp=_vjp, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.nn.functional.linear(a["x"].reshape(a["x"].shape[0], -1), a["w"].T,
                                                            a["b"]),
    jax=lambda jax, a, c, h: jax.numpy.matmul(a["x"].reshape(a["x"].shape[0], -1), a["w"]) + a["b"],
    cs231n=("affine_forward", "affine_backward", lambda fwd, a, c, h: fwd(a["x"], a["w"], a["b"]),
            lambda r: dict(zip(("x", "w", "b"), r))),
    slips=(Slip("db_mean", "db averaged over the batch instead of summed",
                lambda ns, a, c, h, dout: {"b": ns.mean(dout, 0)}),),
    shrink=_shrink, running=RUNNING)
