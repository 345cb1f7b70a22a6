"""Name every failing row by evidence: dtype_limit, kink, convention, precision or bug.

A row fails when its error exceeds the rounding the definition allows
(``bpcheck.judge.compare``). Its class is decided by re-evaluating the truth, never
by how close the candidate happens to be to some framework's numbers:

dtype_limit  the definition itself is not finite in the case's dtype here
             (``bounds.limits``: a sigmoid output that rounds to 1.0 under BCE's
             log(1 - a); softplus's e^z past the overflow), the row is computed
             from that value, and the candidate met it. At the loss: the row
             itself is NaN or infinite, as the definition's is; a *finite*
             gradient is judged against the certified truth like any other (a
             stable formula's way past the limit is right or wrong; torch's clamp
             is a convention). At a hidden layer: the candidate's activation there
             is not finite (or not reported), so every row computed from it is the
             definition's inf carried on; a candidate that reports that activation
             finite went past the overflow its own way, and its later rows are
             judged as any others. A note with a hint.
kink         the candidate agrees with the truth re-evaluated with the other
             one-sided derivative at relu/leaky_relu inputs that are exactly 0 or
             within rounding of 0 (both sides are admissible subgradients there).
             The choice of sides is searched (all of them for up to
             ``MAX_ENUMERATED`` entries, greedily beyond); what still fails is not
             excused.
convention   the candidate agrees, within the row's own tolerance, with the arbiter's
             evaluation of a documented framework convention (``CONVENTIONS``, each
             with its source): a convention never widens a tolerance.
precision    the right formula with too little accuracy: a relative error below
             u^0.5, or in a float64 case below float32's u^0.5 and within the
             tolerance the same definition has in float32. A failure.
bug          everything else, and a NaN or infinity where the definition is finite.
"""
import itertools
import math

import numpy as np

from bpcheck import ops
from bpcheck.core import rounding
from bpcheck.core.spec import ACTIVATIONS
from bpcheck.judge.bounds import UNIT_ROUNDOFF
from bpcheck.judge.compare import SAFETY, TOLERANCE, allowed_error, lookup, metrics
from bpcheck.ops import network

REAL = ("bug", "precision")            # classes that fail a run
NOTES = ("dtype_limit", "kink", "convention")   # classes that are reported, not failed (unless --strict)
CLASSES = ("pass",) + NOTES + REAL
MAX_ENUMERATED = 10


def one_sided(activation):
    """The two one-sided derivatives (lo, hi) at the activation record's kink; None without a kink."""
    kinks = ops.get(activation).kinks
    return None if kinks is None else tuple(kinks({"x": np.zeros(1)}, {}, {})["x"][1:])


def _bce_clamp_rounded_a(case, truth, radius):
    """How far torch's clamped BCE output delta, (a - y) / max(a (1 - a), 1e-12) / n times sigmoid' =
    a (1 - a), moves when the output a moves within ``radius`` (the forward error a correct
    sigmoid may make, absolute): the largest change over a - radius, a + radius, and 1 or 0 where
    a may round there (the product is then 0); and how far its loss moves where a or 1 - a may
    round to 0 (its log then clamped at -100). Returns {"delta": per-entry magnitudes, "loss": a
    float}. Where the clamp binds the two a (1 - a) no longer cancel, so a's own rounding moves this formula by up to ~u / (1 - a) relative, which
    the definition's cancelling bound does not model: this change, not a wider bound, is what
    the convention's tolerance adds."""
    n = len(case.spec["layers"]) - 1
    z = np.asarray(truth["pre_activations"][f"layers.{n}"], np.float64)
    a = np.asarray(truth["activations"][f"layers.{n}"], np.float64)
    y = np.asarray(case.y, np.float64)
    eps = float(np.float32(1e-12))

    def delta(a_, na_):
        return (a_ - y) * (a_ * na_) / np.maximum(a_ * na_, eps) / y.size

    with np.errstate(all="ignore"):
        na = rounding.sigmoid(-z)                       # 1 - a without cancellation
        exact = delta(a, na)
        worst = np.zeros_like(a)
        for step in (-1.0, 1.0):
            a_ = np.clip(a + step * radius, 0.0, 1.0)
            worst = np.maximum(worst, np.abs(delta(a_, np.maximum(na - step * radius, 0.0)) - exact))
        # where a may round to 1 or to 0 (subnormal, flushed), a (1 - a) is 0 and so is the product
        tiny = float(np.finfo(case.spec["dtype"]).tiny)
        worst = np.where((na <= radius) | (a <= radius + tiny), np.maximum(worst, np.abs(exact)), worst)
        # where the clamp cannot bind for any a within reach, the formula is the definition's (a - y) / n,
        # the same a (1 - a) cancelling: nothing to add
        worst = np.where(a * na - radius > eps, 0.0, worst)
        # the loss: log a (log(1 - a)) of an a (1 - a) that may round to 0 or be subnormal in the dtype
        # may be anything from its exact value down to the clamp at -100
        log_a, log_na = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
        loss = (np.sum(np.where(a <= radius + tiny, y * (np.maximum(log_a, -100.0) + 100.0), 0.0))
                + np.sum(np.where(na <= radius + tiny, (1 - y) * (np.maximum(log_na, -100.0) + 100.0), 0.0))
                ) / y.size
    return {"delta": np.nan_to_num(worst, nan=np.inf), "loss": float(abs(loss))}


# Documented framework conventions: how the arbiter evaluates each, and where it is documented. An
# activation's are its record's (``Convention.arbiter``: the variant's name in the arbiter); BCE's clamp
# is the loss's here, with how far a's rounding moves it. A framework's conventions also hold together
# (torch's softplus cut-over in a hidden layer and its BCE clamp at the output), so each framework's
# applicable set is tried at once as well.
def _swap(old, new):
    return lambda spec: {**spec, "layers": [{**l, "activation": new if l["activation"] == old else l["activation"]}
                                            for l in spec["layers"]]}


def _activation_convention(activation, c):
    return {"name": c.note, "framework": c.framework,
            "applies": lambda spec: any(l["activation"] == activation for l in spec["layers"]),
            "spec": _swap(activation, c.arbiter), "source": c.source}


CONVENTIONS = tuple(_activation_convention(name, c) for name in ACTIVATIONS for c in ops.get(name).conventions
                    if c.arbiter) + (
    {"name": "binary cross-entropy with PyTorch's clamp (log >= -100; backward divides by max(a(1-a), 1e-12))",
     "framework": "torch",
     "applies": lambda spec: spec["loss"] == "binary_cross_entropy",
     "spec": lambda spec: {**spec, "loss": "binary_cross_entropy@torch"},
     "rounded_a": _bce_clamp_rounded_a,
     "source": "torch.nn.BCELoss (https://docs.pytorch.org/docs/stable/generated/torch.nn.BCELoss.html) and "
               "binary_cross_entropy_backward in aten/src/ATen/native/Loss.cpp"},
)


def convention_sets(spec):
    """The conventions to try on ``spec``: each applicable one alone, and each framework's together."""
    applicable = [c for c in CONVENTIONS if c["applies"](spec)]
    sets = [(c,) for c in applicable]
    for framework in dict.fromkeys(c["framework"] for c in applicable):
        together = tuple(c for c in applicable if c["framework"] == framework)
        if len(together) > 1:
            sets.append(together)
    return sets


def classify(case, result, truth, bounds, rows, *, evaluate=None):
    """Set the class (and a ``note``) of every row whose class is "fail"; return ``rows``.

    ``evaluate(spec)`` returns the arbiter's truth for ``case`` under another spec (for the
    conventions); None skips them.
    """
    failing = [r for r in rows if r["class"] == "fail"]
    if not failing:
        return rows
    for r in failing:
        g = lookup(result, r["layer"], r["tensor"])
        finite = g is None or bool(np.all(np.isfinite(np.asarray(g, np.float64))))
        limit = next((lim for lim in bounds.limits if lim.reaches(r) and _met(lim, case, result)
                      and (not finite or lim.layer < len(case.spec["layers"]))), None)
        if limit is not None:
            r.update({"class": "dtype_limit", "note": f"{limit.reason}: the definition itself is not finite in "
                                                      f"{case.spec['dtype']} here; {limit.hint}"})
        elif not finite:
            r.update({"class": "bug", "note": "NaN or infinity where the truth is finite"})
    _kinks(case, result, truth, bounds, [r for r in rows if r["class"] == "fail"])
    if evaluate is not None:
        _conventions(case, result, evaluate, bounds, [r for r in rows if r["class"] == "fail"])
    u = UNIT_ROUNDOFF[case.spec["dtype"]]
    for r in rows:
        if r["class"] != "fail":
            continue
        if r["rel"] <= u ** TOLERANCE["precision"][0]:
            r.update({"class": "precision", "note": "relative error below u^0.5: the right formula with too "
                                                    "little accuracy"})
        elif (case.spec["dtype"] == "float64" and r["rel"] <= UNIT_ROUNDOFF["float32"] ** TOLERANCE["precision"][0]
              and r["error"] <= allowed_error(bounds, r["layer"], r["tensor"], "float64", 1,
                                              u=UNIT_ROUNDOFF["float32"])):
            r.update({"class": "precision", "note": "within what the definition allows in float32: float32 "
                                                    "arithmetic where float64 was asked?"})
        else:
            r["class"] = "bug"
    return rows


def _met(limit, case, result):
    """Whether the candidate ran into ``limit`` itself. A hidden layer's limit (softplus's e^z past the
    overflow) is met unless the candidate reports that layer's activation finite: then it went past
    the overflow its own way (a stable formula), and the rows computed from it are judged as any
    other -- a NaN further on is its own. (A limit at the loss excuses only rows that are themselves
    non-finite: the gradient is not computed from the loss's value, and a finite one is judged.)"""
    if limit.layer >= len(case.spec["layers"]):
        return True
    a = lookup(result, limit.layer, "activation")
    return a is None or not bool(np.all(np.isfinite(np.asarray(a, np.float64))))


def _fails_against(result, truth, rows, allowed=None):
    """How far each row is from passing against another truth: sum of max(0, error/allowed - 1).
    ``allowed(row)`` gives another formula's tolerance (default: the row's own)."""
    excess, passing = 0.0, []
    for r in rows:
        g, t = lookup(result, r["layer"], r["tensor"]), lookup(truth, r["layer"], r["tensor"])
        limit = r["allowed"] if allowed is None else allowed(r)
        error = metrics(g, t, limit)["error"]
        passing.append(error <= limit)
        excess += max(0.0, error / limit - 1) if math.isfinite(error) else math.inf
    return excess, passing


# ---- kinks ------------------------------------------------------------------------

def kink_entries(case, truth, bounds):
    """[(layer, row, unit, exact)] of inputs at an activation record's kink (relu, leaky_relu at 0):
    exactly 0, or within kink_zone times their forward error bound of 0."""
    u, zone = UNIT_ROUNDOFF[case.spec["dtype"]], TOLERANCE["kink_zone"][0]
    out = []
    for i, layer in enumerate(case.spec["layers"]):
        if one_sided(layer["activation"]) is None:
            continue
        z = np.asarray(truth["pre_activations"][f"layers.{i}"], np.float64)
        near = np.abs(z) <= zone * bounds.z_scale[i] * u
        out += [(i, b, j, bool(z[b, j] == 0)) for b, j in zip(*np.nonzero(near))]
    return out


def kink_truths(case, truth):
    """``at(flips, fraction=None)``: the truth with the other one-sided derivative at ``flips`` [(layer,
    row, unit)] -- or, given a ``fraction`` t in [0, 1], the subgradient lo + t (hi - lo) there -- :
    truth plus the change that makes in BP1-BP4, computed in float64 by the records' walker
    (``bpcheck.ops.network.backward``: exact values, exact difference in form). The walk at the
    truth's own derivatives is done once, for every choice a search tries."""
    spec = case.spec
    x, params, a, base = network.at_truth(case, truth)
    d0 = network.backward(spec, params, x, case.y, a, base)

    def at(flips, fraction=None):
        other = [d.copy() for d in base]
        for i, b, j in flips:
            left, right = one_sided(spec["layers"][i]["activation"])
            if fraction is None:
                other[i][b, j] = right if base[i][b, j] == left else left
            else:
                other[i][b, j] = left + fraction * (right - left)
        d1 = network.backward(spec, params, x, case.y, a, other)
        return {"loss": truth["loss"], "activations": truth["activations"],
                "pre_activations": truth["pre_activations"],
                "grads": {k: truth["grads"][k] + d1["grads"][k] - d0["grads"][k] for k in truth["grads"]},
                "deltas": {k: truth["deltas"][k] + d1["deltas"][k] - d0["deltas"][k] for k in truth["deltas"]},
                "input_grad": truth["input_grad"] + d1["input_grad"] - d0["input_grad"]}
    return at


def kink_truth(case, truth, flips, fraction=None):
    """One choice of ``kink_truths``."""
    return kink_truths(case, truth)(flips, fraction)


def _moved(change, row):
    """The norm of a propagated change (``_propagate``) at a row's tensor; 0 where it has none."""
    if row["tensor"] == "loss":
        return change.get("loss", 0.0)
    value = None if row["tensor"] == "activation" else lookup(change, row["layer"], row["tensor"])
    return 0.0 if value is None else rounding.norm2(np.ravel(value))


def _propagate(case, truth, output_delta):
    """A bound on how far a change of the output layer's delta (magnitudes, ``output_delta``) moves
    every delta, dC/db, dC/dW and the input gradient through BP2-BP4: the same walk in absolute
    values (float64), keyed like a result."""
    x, params, a, derivs = network.at_truth(case, truth)
    derivs[-1] = np.ones_like(derivs[-1])
    return network.backward(case.spec, {k: np.abs(v) for k, v in params.items()}, np.abs(x), case.y,
                            [np.abs(v) for v in a], [np.abs(d) for d in derivs], seed=np.abs(output_delta))


def _kinks(case, result, truth, bounds, failing):
    entries = kink_entries(case, truth, bounds)
    affected = [r for r in failing if r["tensor"] not in ("loss", "activation")]
    if not entries or not affected:
        return
    keys = [(i, b, j) for i, b, j, _ in entries]
    exact_keys = [(i, b, j) for i, b, j, e in entries if e]
    alt_at = kink_truths(case, truth)
    best = (_fails_against(result, truth, affected)[0], ())

    def trial(flips):
        nonlocal best
        excess = _fails_against(result, alt_at(flips), affected)[0]
        if excess < best[0]:
            best = (excess, tuple(flips))
        return excess == 0

    if len(keys) <= MAX_ENUMERATED:
        choices = (c for k in range(1, len(keys) + 1) for c in itertools.combinations(keys, k))
        any(trial(flips) for flips in choices)
    else:
        # one choice of side made throughout (relu'(0) = 1 everywhere, in one layer, at exact zeros)
        # first: single flips cannot find it where each alone moves a sum the wrong way
        layers = sorted({k[0] for k in keys})
        uniform = [exact_keys, keys] + [[k for k in group if k[0] == i] for group in (exact_keys, keys)
                                        for i in layers]
        if not any(trial(tuple(sorted(set(flips)))) for flips in uniform if flips):
            current, improved = set(best[1]), True     # greedy from the best: one entry at a time
            while improved and best[0] > 0:
                improved = False
                for key in keys:
                    before = best[0]
                    trial(tuple(sorted(current ^ {key})))
                    if best[0] < before:
                        current, improved = set(best[1]), True
    fraction = None
    if best[0] > 0 and exact_keys:
        # one subgradient strictly between the sides, the same at every exact zero (relu'(0) = 1/2,
        # np.heaviside(z, 0.5)), in all layers or in one: its fraction fitted to the result
        groups = [exact_keys] + [[k for k in exact_keys if k[0] == i] for i in sorted({k[0] for k in exact_keys})]
        for group in (tuple(g) for g in dict.fromkeys(map(tuple, groups))):
            for t in (_fitted_fraction(alt_at, result, group, affected), 0.5):
                excess = _fails_against(result, alt_at(group, t), affected)[0]
                if excess < best[0]:
                    best, fraction = (excess, group), t
    if not best[1]:
        return
    alt = alt_at(best[1], fraction)
    _, passing = _fails_against(result, alt, affected)
    exact = set(exact_keys)
    flipped = set(best[1])
    leaky_at_zero = all(k in exact and case.spec["layers"][k[0]]["activation"] == "leaky_relu" for k in flipped)
    if fraction is None:
        how = (f"matches the truth with the other one-sided derivative at {len(flipped)} input(s) at the kink "
               f"({sum(k in exact for k in flipped)} exactly 0)")
    else:
        name = case.spec["layers"][best[1][0][0]]["activation"]
        lo, hi = one_sided(name)
        how = (f"matches the truth with {name}'(0) = {lo + fraction * (hi - lo):.6g} at {len(flipped)} input(s) "
               f"exactly 0: any value between the one-sided derivatives {lo:g} and {hi:g} is a subgradient")
    if leaky_at_zero and fraction is None:
        how += "; leaky_relu'(0) = 1 is jax.nn.leaky_relu's convention (where(x >= 0, ...))"
    for r, ok in zip(affected, passing):
        if ok:
            r.update({"class": "kink", "note": how})


def _fitted_fraction(alt_at, result, group, rows):
    """The t in [0, 1] whose subgradient lo + t (hi - lo) at ``group`` best explains the result: the
    least-squares t over the rows' tensors (exact where the truth is affine in t, one layer's kinks);
    ``alt_at`` is the case's ``kink_truths``."""
    t0, t1 = alt_at(group, 0.0), alt_at(group, 1.0)
    num = den = 0.0
    for r in rows:
        g, a, b = (lookup(v, r["layer"], r["tensor"]) for v in (result, t0, t1))
        if g is None or a is None or b is None:
            continue
        g, a, b = (np.asarray(v, np.float64) for v in (g, a, b))
        if g.shape != a.shape or not np.all(np.isfinite(g)):
            continue
        d = b - a
        num, den = num + float(np.sum((g - a) * d)), den + float(np.sum(d * d))
    return float(np.clip(num / den, 0.0, 1.0)) if den > 0 else 0.5


# ---- documented conventions ---------------------------------------------------------

def _conventions(case, result, evaluate, bounds, failing):
    if not failing:
        return
    best = None
    last = len(case.spec["layers"]) - 1
    radius = SAFETY * UNIT_ROUNDOFF[case.spec["dtype"]] * np.asarray(bounds.scale[(last, "activation")])
    for conventions in convention_sets(case.spec):
        spec = case.spec
        for convention in conventions:
            spec = convention["spec"](spec)
        try:
            alt = evaluate(spec)
        except (ValueError, KeyError, ArithmeticError):
            continue
        allowed = None
        moved = [c["rounded_a"](case, alt, radius) for c in conventions if "rounded_a" in c]
        if moved:
            shift = _propagate(case, alt, sum(m["delta"] for m in moved))
            shift["loss"] = sum(m["loss"] for m in moved)
            allowed = lambda r, d=shift: r["allowed"] + _moved(d, r)  # noqa: E731
        excess, passing = _fails_against(result, alt, failing, allowed)
        if any(passing) and (best is None or excess < best[0]):
            best = (excess, passing, conventions)
    if best is None:
        return
    _, passing, conventions = best
    note = "; ".join(f"matches {c['name']}: {c['source']}" for c in conventions)
    for r, ok in zip(failing, passing):
        if ok:
            r.update({"class": "convention", "note": note})
