"""Dropout in training mode with its mask: out = x * mask / p, p the keep probability (CS231n's
dropout_forward, "inverted dropout"; mask = (np.random.rand(*x.shape) < p) after np.random.seed(seed)).

VJP: dx = dout * mask / p. Convention: CS231n's p keeps a unit, torch.nn.functional.dropout's p drops it
(scale 1 / (1 - p)); here p always keeps. The bindings multiply by the mask and scale with the
framework's own elementwise ops (neither framework's dropout takes a given mask).
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["DROPOUT"]

FAMILIES = COMMON_FAMILIES + ("keep_all", "keep_few", "odd_p")


def mask_of(shape, p, seed):
    """CS231n's mask: np.random.seed(seed); np.random.rand(*shape) < p (a legacy RandomState stream)."""
    return np.random.RandomState(seed).rand(*shape) < p


def _draw(rng, family, dtype):
    shape = tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(2, 4))))
    p = {"keep_all": 1.0, "keep_few": 0.1, "odd_p": 0.3}.get(family, float(rng.choice([0.5, 0.75, 0.8])))
    seed = int(rng.integers(0, 2**31))
    return Draw({"x": rng.standard_normal(shape).astype(dtype)}, {"mask": mask_of(shape, p, seed)},
                {"p": p, "seed": seed})


def _scale(ns, h):
    """1 / p as an operation (rounded in the dtype), never as a float64 literal taken for exact."""
    return ns.const(1.0) / ns.const(h["p"])


def _forward(ns, a, c, h):
    return ns.where(c["mask"], a["x"] * _scale(ns, h), ns.const(0.0))


def _vjp(ns, a, c, h, dout):
    return {"x": ns.where(c["mask"], dout * _scale(ns, h), ns.const(0.0))}


def _call(fwd, a, c, h):
    return fwd(a["x"], {"p": h["p"], "mode": "train", "seed": h["seed"]})


DROPOUT = Op(
    name="dropout",
    definition="inverted dropout, training mode: out = x * mask / p with p the keep probability and mask "
               "CS231n's (np.random.seed(seed); np.random.rand(*x.shape) < p)",
    inputs=("x",), constants=("mask",), forward=_forward, vjp=_vjp, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: a["x"] * c["mask"] / h["p"],
    jax=lambda jax, a, c, h: jax.numpy.where(c["mask"], a["x"] / h["p"], 0.0),
    cs231n=("dropout_forward", "dropout_backward", _call, lambda r: {"x": r}),
    slips=(Slip("no_mask", "dropout backward without the mask: dout / p everywhere",
                lambda ns, a, c, h, dout: {"x": dout * _scale(ns, h)}),
           Slip("no_scale", "dropout backward without the 1/p scale: dout * mask",
                lambda ns, a, c, h, dout: {"x": ns.where(c["mask"], dout, ns.const(0.0))})))
