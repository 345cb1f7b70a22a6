"""The rounding error a correct implementation may make, tensor by tensor: a running error bound.

Given a case and its exact values (the truth's z_i, a_i and delta_i), this
module carries an *error scale* through the network as any float
implementation of the definitions would compute it, in the case's dtype: it
walks the spec's graph (``bpcheck.ops.network.compile_spec``: transpose,
affine and activation nodes, then the loss), each node by its op record's
``running`` rule (``bpcheck.ops.running``, where the equations are), forward
in node order and back in reverse. Everything is in units of u and absolute.

Errors from different rounding events are independent and combine in
quadrature (the probabilistic model of Higham & Mary, SIAM J. Sci. Comput.
41(5), 2019): propagated through a matrix they grow like the matrix's
Frobenius norm, not like |W|, which would compound by sqrt(width) per layer.
Each single rounding is bounded by its worst case, and the tolerance is
``SAFETY`` times this scale (``bpcheck.judge.compare.TOLERANCE``) -- a bound that
every implementation of the definition meets, measured on 10^5 cases
(``bpcheck selftest --false-alarms``).

``limits`` names what the definition itself cannot evaluate in the dtype on
this case (a sigmoid output that rounds to exactly 1.0 under BCE's
log(1 - a); softplus's e^z past the dtype's overflow): there a NaN or inf is
the definition's, not the implementation's (class ``dtype_limit``).
"""
import math
from dataclasses import dataclass, field

import numpy as np

from bpcheck import ops
from bpcheck.core import rounding
from bpcheck.ops.network import compile_spec
from bpcheck.ops.running import Walk

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


@dataclass
class Limit:
    """The definition cannot be evaluated in the dtype from ``layer`` on (len(layers): the loss)."""
    reason: str
    hint: str
    layer: int

    def reaches(self, row):
        """Whether a row's tensor is computed from the limited value."""
        return row["tensor"] != "activation" or row["layer"] >= self.layer


@dataclass
class Bounds:
    """Error scales in units of u (absolute), keyed like compare rows: (layer, tensor)."""
    scale: dict = field(default_factory=dict)      # (layer | None, tensor) -> array, units of u
    z_scale: list = field(default_factory=list)    # s_z per layer (B, units), units of u
    limits: list = field(default_factory=list)     # [Limit]: where the definition is not finite

    def norm(self, layer, tensor):
        s = self.scale.get((layer, tensor))
        return math.inf if s is None else rounding.norm2(s)


def running_bounds(case, truth, *, safety=1.0, same_a=True):
    """``Bounds`` for every tensor of ``case`` from the exact values in ``truth``.

    ``truth`` holds float64 ``pre_activations``, ``activations`` and ``deltas`` keyed
    "layers.{i}" (the arbiter's). ``safety`` scales the zones where rounding may cross a
    threshold: a relu input within ``safety`` s_z of its kink, an overflow within reach.
    ``same_a``: BCE's gradient and sigmoid' read the same rounded output (the definitions as
    written); False for a formula where they do not cancel (a clamped denominator). Raises KeyError for an unknown activation or loss.

    The squared scales are carried in float64; where one overflows (a tensor beyond ~1e154,
    as the exp_overflow cases reach in float64) or may underflow (an exact value below
    ``TINY``: a silu output of 1e-186 past exp's range) the bound is carried again in
    extended precision (np.longdouble: 80-bit on x86-64, exponent range 10^4932) and
    rounded back to float64 -- an overflowing bound is never read as "anything goes", nor
    an underflowed one as "exact".
    """
    out = _bounds(case, truth, safety, same_a, np.float64)
    wide = not all(np.isfinite(v).all() for v in out.scale.values()) or _tiny(truth)
    if wide and np.finfo(np.longdouble).maxexp > 1024:
        out = _bounds(case, truth, safety, same_a, np.longdouble)
        with np.errstate(over="ignore"):
            out.scale = {key: value.astype(np.float64) for key, value in out.scale.items()}
            out.z_scale = [value.astype(np.float64) for value in out.z_scale]
    for key, value in out.scale.items():     # inf x 0 where the first-order model breaks down: unbounded
        out.scale[key] = np.where(np.isnan(value), np.inf, value)
    return out


TINY = 1e-120      # an exact value below this (nonzero) may have a squared scale below float64's range


def _tiny(truth):
    """Whether some nonzero exact value is below ``TINY``."""
    arrays = [truth.get("loss")] + [v for kind in ("pre_activations", "activations", "deltas", "grads")
                                    for v in (truth.get(kind) or {}).values()] + [truth.get("input_grad")]
    for v in arrays:
        if v is not None:
            m = np.abs(np.asarray(v, np.float64))
            if np.any((m > 0) & (m < TINY)):
                return True
    return False


def _bounds(case, truth, safety, same_a, ft):
    """``running_bounds`` with the scales carried in float type ``ft``: the records' ``running`` rules
    walked over the compiled spec (``bpcheck.ops.running.walk_chain``)."""
    spec = case.spec
    u = UNIT_ROUNDOFF[spec["dtype"]]
    n_layers = len(spec["layers"])
    x = np.asarray(case.x, ft)
    value = {"x": x, **{k: np.asarray(v, ft) for k, v in case.params.items()}}
    cot = {}
    for i in range(n_layers):
        value[f"layers.{i}.z"] = np.asarray(truth["pre_activations"][f"layers.{i}"], np.float64)
        value[f"layers.{i}.a"] = np.asarray(truth["activations"][f"layers.{i}"], ft)
        cot[f"layers.{i}.z"] = np.asarray(truth["deltas"][f"layers.{i}"], ft)
    # Every computed value may be flushed or rounded in the subnormal range, an absolute error up to
    # the dtype's smallest normal number: in units of u, ``flush`` (negligible unless values are that
    # small; a derivative flushed to 0 then moves delta by |P| tiny, which relative rounding misses).
    flush = ft(float(np.finfo(spec["dtype"]).tiny)) / ft(u)
    walk = Walk(ft=ft, u=u, safety=safety, flush=flush, flush2=flush * flush, same_a=same_a, y=case.y,
                value=value, cot=cot, s2={"x": np.zeros_like(x)})
    graph = compile_spec(spec)
    out = Bounds()
    with np.errstate(all="ignore"):
        for node in graph.nodes:                          # forward, then the limits it reaches
            ops.get(node.op).running.forward(walk, node)
        z = [value[f"layers.{i}.z"] for i in range(n_layers)]
        out.z_scale = [np.sqrt(walk.s2[f"layers.{i}.z"]) for i in range(n_layers)]
        _limits(case, z, [value[f"layers.{i}.a"] for i in range(n_layers)],
                [walk.s2[f"layers.{i}.a"] for i in range(n_layers)], out, u, safety)
        for node in reversed(graph.nodes):
            ops.get(node.op).running.backward(walk, node)
    out.scale[(None, "loss")] = walk.loss
    for i in range(n_layers):
        out.scale[(i, "activation")] = np.sqrt(walk.s2[f"layers.{i}.a"])
        out.scale[(i, "delta")] = np.sqrt(walk.cot_s2[f"layers.{i}.z"])
        out.scale[(i, "b")] = np.sqrt(walk.cot_s2[f"layers.{i}.b"])
        out.scale[(i, "W")] = np.sqrt(walk.cot_s2[f"layers.{i}.W"])
    out.scale[(None, "input_grad")] = np.sqrt(walk.cot_s2["x"])
    return out


# What the definition as written cannot evaluate in a dtype: (test, reason, hint).
def _limits(case, z, a, s_a2, out, u, safety):
    spec, dtype = case.spec, case.spec["dtype"]
    info = np.finfo(dtype)
    log_max = math.log(float(info.max))
    for i, layer in enumerate(spec["layers"]):
        if layer["activation"] == "softplus":
            if np.any(z[i] + safety * out.z_scale[i] * u >= log_max):
                out.limits.append(Limit(
                    f"layer {i} softplus: z reaches {float(z[i].max()):.4g}, past log(max {dtype}) = "
                    f"{log_max:.4g}, where log(1 + e^z) overflows",
                    "np.logaddexp(0, z) (or max(z, 0) + log1p(exp(-|z|))) stays finite", i))
    if spec["loss"] == "binary_cross_entropy":
        s = np.nan_to_num(np.sqrt(s_a2[-1]), nan=np.inf) * u * safety
        na = rounding.sigmoid(-z[-1])
        if np.any(~(na > s + u)) or np.any(~(a[-1] > s + float(info.tiny))):
            out.limits.append(Limit(
                f"binary_cross_entropy: a sigmoid output lies within rounding of "
                f"{'1' if np.any(~(na > s + u)) else '0'} in {dtype}, where log(1 - a) or log(a) is infinite",
                "use bce_with_logits on the logits, or clamp as torch does (log >= -100)", len(spec["layers"])))
