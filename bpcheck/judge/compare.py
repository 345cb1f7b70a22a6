"""Compare a Result with the truth, tensor by tensor, against tolerances derived from rounding.

For every (layer, tensor) -- the loss, each layer's activation, delta = dC/dz,
dC/db and dC/dW, and the input gradient -- with g the candidate's tensor and g*
the exact one (the arbiter's), a row holds:

    error     ||g - g*||                       (2-norm over the tensor's entries)
    allowed   SAFETY u ||s|| + floor           s: the running error bound of bpcheck.judge.bounds
              (CAP ||g*|| + floor where ||s|| is not finite)
    err_u     error / ||g*|| / u               normwise relative error in units of u
    tol_u     allowed / ||g*|| / u             the same scale for the tolerance
    margin    allowed / error                  > 1 passes; how far above says how tight
    sensitivity  allowed / ||g*||              the smallest one-tensor relative error caught
    scale     <g, g*> / <g*, g*>               2.0 means "sum instead of mean?"
    cosine    <g, g*> / (||g|| ||g*||)
    max_abs   max |g - g*| / max |g*|

u is the unit roundoff of the case's dtype (float32 2^-24, float64 2^-53); where
||g*|| is 0 the relative columns use ||s|| u instead. A row passes when
error <= allowed; where the bound is not finite, ``allowed`` is CAP ||g*|| + floor: a
tolerance is never infinite, so a check can always fail. ``floor`` is the dtype's smallest normal number per entry:
a value below it may be flushed to zero (XLA on CPU does), which no tolerance
in units of u can see. A wrong shape, a wrong dtype, a missing or an unknown
gradient are rows too, failing with a message. Which class a failing row has
is decided by ``bpcheck.judge.classify``.
"""
import math

import numpy as np

from bpcheck.core.rounding import K_FN, norm2
from bpcheck.judge.bounds import UNIT_ROUNDOFF

# One table; each number with the reason it has this value (README, "How a gradient is judged").
TOLERANCE = {
    "safety": (4.0, "a tensor passes when ||g - g*|| <= safety x u x ||s||, s the running error bound "
                    "(bpcheck.judge.bounds). Over the false-alarm campaign (reports/false_alarms.md) the largest "
                    "||g - g*|| / (u ||s||) of any correct implementation -- the reference, torch, jax and "
                    "the textbook, scalar and per-example implementations -- stays below 1, so 4 leaves "
                    "a margin of 4 or more while float32 stays sensitive to 1e-4"),
    "k_fn": (K_FN, "a library exp, log, tanh, erf is good to K u: measured on 4e5 float32 points, NumPy "
                   "<= 3.9 u, PyTorch <= 1.5 u, JAX <= 5.7 u (tests/test_rounding.py). Defined once, as "
                   "bpcheck.core.rounding.K_FN, where the rounding models use it; this entry reports it"),
    "kink_zone": (4.0, "a relu/leaky_relu input within safety x its forward error bound of 0 may land on "
                       "either side of the kink in the candidate's arithmetic"),
    "cap": (1.5, "where the bound is not finite (the first-order model meets inf x 0 past an overflow or "
                 "underflow) the tolerance is cap x ||g*|| plus the underflow floor (the floor alone where g* = 0), "
                 "never infinite: a sign flip (error 2 ||g*||), a factor of 2.5 or more and a NaN still fail "
                 "there. A finite bound is never capped: where the definition as written loses every digit its "
                 "result may be many times the truth (a softmax gradient p - 1 of 1e-15 computed in float32)"),
    "precision": (0.5, "a failing tensor has the right formula and too little accuracy (class precision) when "
                       "its relative error is below u^0.5, or, in a float64 case, below float32's u^0.5 and "
                       "within the tolerance the same definition has in float32 (float32 arithmetic where "
                       "float64 was asked)"),
}
SAFETY = TOLERANCE["safety"][0]
CAP = TOLERANCE["cap"][0]
TENSORS = ("loss", "activation", "delta", "b", "W", "input_grad")


def tensors(result, spec):
    """Yield ``(layer, tensor, array)`` for every comparable tensor in a result."""
    yield None, "loss", np.asarray(result["loss"], dtype=np.float64)
    for i in range(len(spec["layers"])):
        for kind, tensor in (("activations", "activation"), ("deltas", "delta")):
            if f"layers.{i}" in (result.get(kind) or {}):
                yield i, tensor, result[kind][f"layers.{i}"]
        yield i, "b", result["grads"].get(f"layers.{i}.b")
        yield i, "W", result["grads"].get(f"layers.{i}.W")
    if result.get("input_grad") is not None:
        yield None, "input_grad", result["input_grad"]


def lookup(result, layer, tensor):
    """The array of ``tensor`` at ``layer`` in a result, or None."""
    if tensor == "loss":
        return np.asarray(result["loss"], dtype=np.float64)
    if tensor == "input_grad":
        return result.get("input_grad")
    if tensor in ("W", "b"):
        return result["grads"].get(f"layers.{layer}.{tensor}")
    kind = {"delta": "deltas", "activation": "activations"}[tensor]
    return (result.get(kind) or {}).get(f"layers.{layer}")


def metrics(g, g_star, allowed, scale_norm=0.0):
    """Error metrics of ``g`` against ``g_star`` (same shape) with ``allowed`` the absolute tolerance.
    ``scale_norm`` (||s|| u) stands in for ||g*|| in the relative columns when ||g*|| is 0."""
    g = np.asarray(g, dtype=np.float64).ravel()
    t = np.asarray(g_star, dtype=np.float64).ravel()
    norm_t = norm2(t)
    denom = max(norm_t, scale_norm, np.finfo(np.float64).tiny)
    if not np.all(np.isfinite(g)):
        return {"error": math.inf, "rel": math.inf, "scale": math.nan, "max_abs": math.inf,
                "cosine": math.nan, "denom": denom}
    diff = g - t
    error, norm_g = norm2(diff), norm2(g)
    c = max(norm_t, norm_g)                                  # g . t computed as c^2 (g/c . t/c): no overflow
    gt = float((g / c) @ (t / c)) if 0 < c < math.inf else 0.0
    return {
        "error": error, "rel": error / denom, "denom": denom,
        "scale": gt * (c / norm_t) * (c / norm_t) if norm_t > 0 else (1.0 if norm_g == 0 else math.inf),
        "max_abs": float(np.max(np.abs(diff), initial=0.0)) / max(float(np.max(np.abs(t), initial=0.0)),
                                                                 np.finfo(np.float64).tiny),
        "cosine": gt * (c / norm_g) * (c / norm_t) if norm_g > 0 and norm_t > 0 else (1.0 if norm_g == norm_t
                                                                                      else 0.0),
    }


def underflow_floor(dtype, size):
    """The dtype's smallest normal number per entry, as a 2-norm: what flushed subnormals may move."""
    return float(np.finfo(dtype).tiny) * math.sqrt(max(size, 1))


def allowed_error(bounds, layer, tensor, dtype, size, *, u=None, truth_norm=0.0):
    """SAFETY u ||s|| plus the underflow floor, for one tensor (``u`` overrides the dtype's). Where
    that bound is not finite (or NaN): CAP ||g*|| plus the floor (``truth_norm`` = ||g*||; the floor
    alone where it is not given). Never infinite, never NaN."""
    u = UNIT_ROUNDOFF[dtype] if u is None else u
    floor = underflow_floor(dtype, size)
    scale = bounds.norm(layer, tensor)
    bound = SAFETY * u * (math.inf if math.isnan(scale) else scale)
    if math.isfinite(bound):
        return bound + floor
    return (CAP * truth_norm if math.isfinite(truth_norm) else 0.0) + floor


def row(case, who, layer, tensor, g, t, bounds):
    """One comparison row (class "pass" or "fail"; ``bpcheck.judge.classify`` names a failure)."""
    spec, dtype = case.spec, case.spec["dtype"]
    u = UNIT_ROUNDOFF[dtype]
    truth_norm = norm2(np.asarray(t, np.float64).ravel())
    allowed = allowed_error(bounds, layer, tensor, dtype, np.size(t), truth_norm=truth_norm)
    s_norm = max(min(bounds.norm(layer, tensor) * u, allowed), underflow_floor(dtype, np.size(t)))  # for ||g*|| = 0
    m = metrics(g, t, allowed, s_norm)
    denom = m.pop("denom")
    r = {"case": case.id, "who": who, "dtype": dtype, "loss_fn": spec["loss"], "depth": len(spec["layers"]),
         "layer": layer, "tensor": tensor,
         "activation": spec["layers"][layer]["activation"] if layer is not None else None,
         "width": spec["layers"][layer]["units"] if layer is not None else None,
         **m, "allowed": allowed, "err_u": m["rel"] / u, "tol_u": allowed / denom / u,
         "margin": allowed / m["error"] if m["error"] > 0 else math.inf,
         "sensitivity": allowed / denom}
    if math.isnan(m["error"]) or math.isnan(allowed):
        raise ArithmeticError(f"{who} {tensor} at layer {layer} of case {case.id}: the judgement met NaN "
                              f"(error {m['error']}, allowed {allowed}): a harness error, never a pass")
    r["class"] = "pass" if m["error"] <= allowed else "fail"
    if r["class"] != "pass":
        r["worst"] = worst_entries(g, t)
    return r


def problem_row(case, who, layer, tensor, message):
    """A row for a tensor that cannot be compared: wrong shape or dtype, missing, unknown."""
    spec = case.spec
    return {"case": case.id, "who": who, "dtype": spec["dtype"], "loss_fn": spec["loss"],
            "depth": len(spec["layers"]), "layer": layer, "tensor": tensor,
            "activation": spec["layers"][layer]["activation"] if layer is not None else None,
            "width": spec["layers"][layer]["units"] if layer is not None else None,
            "error": math.inf, "rel": math.inf, "scale": math.nan, "max_abs": math.inf, "cosine": math.nan,
            "allowed": math.nan, "err_u": math.inf, "tol_u": math.nan, "margin": 0.0, "sensitivity": math.nan,
            "class": "bug", "note": message}


def compare(case, result, truth, bounds, *, who="candidate", problems=()):
    """Rows comparing ``result`` with ``truth`` (tolerances from ``bounds``); ``problems`` are
    (layer, tensor, message) for tensors that could not be compared. Failing rows have class "fail"."""
    rows = [problem_row(case, who, layer, tensor, message) for layer, tensor, message in problems]
    skip = {(layer, tensor) for layer, tensor, _ in problems}
    for layer, tensor, g in tensors(result, case.spec):
        t = lookup(truth, layer, tensor)
        if t is None or g is None or (layer, tensor) in skip:
            continue
        rows.append(row(case, who, layer, tensor, g, t, bounds))
    return rows


def worst_entries(g, t, k=3):
    """The k entries with the largest absolute error, as (index, value, truth)."""
    g, t = np.asarray(g, dtype=np.float64), np.asarray(t, dtype=np.float64)
    diff = np.where(np.isfinite(g), np.abs(g - t), np.inf)
    order = np.argsort(diff.ravel(), kind="stable")[::-1][:k]
    return [[list(map(int, np.unravel_index(j, g.shape))), float(g.ravel()[j]), float(t.ravel()[j])]
            for j in order]


def where(row):
    """'layer 1 (tanh, 4 units) W' / 'input_grad' / 'loss'."""
    if row["layer"] is None:
        return row["tensor"]
    return f"layer {row['layer']} ({row['activation']}, {row['width']} units) {row['tensor']}"


def describe(row):
    """One failing row as a sentence a person can act on."""
    head = f"{row['who']} {where(row)} [{row['dtype']}, {row['loss_fn']}]"
    if not math.isfinite(row.get("allowed", math.nan)) and row.get("note"):
        return f"{head}: {row['note']}, class {row['class']}"
    text = (f"{head}: error {row['err_u']:.3g} u > tolerance {row['tol_u']:.3g} u "
            f"(margin {row['margin']:.2g}), class {row['class']}; "
            f"scale {row['scale']:.4g}, cosine {row['cosine']:.6f}")
    if row.get("note"):
        text += f"\n    {row['note']}"
    for index, got, want in row.get("worst", []):
        text += f"\n    at {index}: got {got:.17g}, truth {want:.17g}"
    return text
