"""The judgement of one op case: the output and every input gradient against the certified truth.

For each tensor T (``out``, then each input's gradient) with g the candidate's and g* the truth:

    allowed = SAFETY u ||s|| + floor        s = the rounding model's bound (bpcheck.ops.exact.bound)

the same rule, SAFETY and floor as the dense path (``bpcheck.judge.compare.TOLERANCE``). s is built from the
magnitudes of the terms, not from g*, so an exact-zero truth (a normalisation under a uniform
cotangent) still has a finite, non-zero tolerance of the size the cancellation allows. Classes:

- ``pass``;
- ``tie`` (passes, with a note): the op has a max (``record.ties``), the candidate's gradient is wrong
  against the truth's choice of maximum, and within tolerance of a convex combination of each window's
  tied maxima (a window's weights are the candidate's own shares where no other window reads its tied
  positions, overlapping windows are fitted together by non-negative least squares; weights sum to 1
  per window, and each share's rounding is granted); a gradient sent in full to every tied maximum is
  not such a combination and stays a bug;
- ``kink`` (passes, with a note): the op has kinks (``record.kinks``) and the candidate is within
  tolerance of the truth with every kink entry's derivative anywhere between the one-sided ones;
- ``bug``: anything else -- a wrong value, shape, a NaN, a missing gradient, an input overwritten.

A failing tensor gets hints: the record's slips it matches (within a tenth of the slip's own distance
from the truth), and a plain rescaling (``scale`` = <g, g*> / <g*, g*> of 2, 1/2, -1, N, 1/N).
"""
import math

import numpy as np
from scipy.optimize import nnls

from bpcheck.judge.compare import SAFETY, metrics, underflow_floor
from bpcheck.ops.algebra import UNIT_ROUNDOFF, Plain
from bpcheck.core.rounding import norm2

__all__ = ["judge", "tensor_names", "compare_tensor", "slip_hints", "scale_hint", "largest_count"]


def tensor_names(op):
    return ("out",) + tuple("d" + k for k in op.inputs)


def _row(tensor, status, message="", **extra):
    return {"tensor": tensor, "status": status, "message": message, **extra}


def _entries(g, t, k=3):
    """The k worst entries: (index, got, want)."""
    diff = np.abs(g - t).ravel()
    order = np.argsort(-np.where(np.isfinite(diff), diff, np.inf), kind="stable")[:k]
    return [(tuple(int(i) for i in np.unravel_index(j, t.shape)), float(g.ravel()[j]), float(t.ravel()[j]))
            for j in order if diff[j] > 0 or not np.isfinite(diff[j])]


def compare_tensor(tensor, g, t, s, dtype):
    u = UNIT_ROUNDOFF[dtype]
    if g is None:
        return _row(tensor, "bug", "missing")
    if g.shape != t.shape:
        return _row(tensor, "bug", f"shape {g.shape}, expected {t.shape}")
    norm_s = norm2(s) if np.all(np.isfinite(s)) else math.inf        # scaled: s may be ~1e-289
    allowed = SAFETY * u * norm_s + underflow_floor(dtype, t.size)
    with np.errstate(all="ignore"):
        m = metrics(g, t, allowed, scale_norm=u * norm_s)
    ok = m["error"] <= allowed
    return _row(tensor, "pass" if ok else "bug", "" if ok else ("not finite" if not np.all(np.isfinite(g))
                                                               else "wrong values"),
                error=m["error"], allowed=allowed, err_u=_ratio(m["rel"], u),
                tol_u=_ratio(allowed / m["denom"], u), margin=allowed / m["error"] if m["error"] > 0 else math.inf,
                scale=m["scale"], cosine=m["cosine"], truth_norm=float(np.linalg.norm(t)),
                entries=_entries(g, t) if not ok else [])


def _ratio(a, b):
    with np.errstate(all="ignore"):
        return float(np.float64(a) / b)


def _tie_fit(op, case, g, dout):
    """(fit, slack) or None if no window has a tie: ``fit`` is the convex combination of tied maxima
    closest to ``g`` (the input gradient); ``slack`` per input entry, in units of u, what a candidate's
    shares can be off by: each share dout[o] w rounds once and the k windows' shares at one position
    are summed, (k + 1) times the sum of |dout[o] w| there.

    A window whose tied positions no other window reads takes the candidate's own shares, g / dout[o]
    (clipped at 0, scaled to sum to 1): exact where ``g`` is a split. Windows that share a tied position
    (overlapping pools) are fitted together: min ||A w - g|| with w >= 0, column (o, j) putting dout[o]
    at tied position j of output o, each output's weights held to sum 1 by heavily weighted rows
    (non-negative least squares), then scaled to sum to 1."""
    groups = op.ties(case.inputs, case.constants, case.hyper)
    if not any(len(pos) > 1 for pos in groups):
        return None
    size = g.size
    gflat = np.asarray(g, dtype=np.float64).ravel()
    dflat = np.asarray(dout, dtype=np.float64).ravel()
    readers = np.zeros(size, dtype=int)
    for positions in groups:
        readers[list(positions)] += 1
    weights = [None] * len(groups)
    shared = [o for o, pos in enumerate(groups) if np.any(readers[list(pos)] > 1)]
    for o, positions in enumerate(groups):
        if o in shared:
            continue
        w = np.clip(gflat[list(positions)] / dflat[o], 0.0, None) if dflat[o] != 0 else np.zeros(len(positions))
        weights[o] = w / w.sum() if w.sum() > 0 else np.full(len(positions), 1.0 / len(positions))
    if shared:
        heavy = 1e6 * max(float(np.max(np.abs(dflat), initial=0.0)), 1.0)
        cols, owner = [], []
        for k, o in enumerate(shared):
            for p in groups[o]:
                col = np.zeros(size + len(shared))
                col[p], col[size + k] = dflat[o], heavy
                cols.append(col)
                owner.append(o)
        w, _ = nnls(np.stack(cols, axis=1), np.concatenate([gflat, np.full(len(shared), heavy)]),
                    maxiter=50 * len(cols))
        owner = np.asarray(owner)
        for o in shared:
            mine = w[owner == o]
            weights[o] = mine / mine.sum() if mine.sum() > 0 else np.full(len(mine), 1.0 / len(mine))
    fit, share = np.zeros(size), np.zeros(size)
    for o, positions in enumerate(groups):
        np.add.at(fit, list(positions), dflat[o] * weights[o])
        np.add.at(share, list(positions), np.abs(dflat[o] * weights[o]))
    return fit.reshape(g.shape), ((readers + 1) * share).reshape(g.shape)


def _kink_fit(op, case, name, g, t):
    """The truth with each kink entry moved to the admissible value nearest the candidate's: dout times
    a derivative between the one-sided ones (any subgradient). None if no entry is at a kink."""
    at, lo, hi = op.kinks(case.inputs, case.constants, case.hyper)[name]
    if not np.any(at):
        return None
    dout = np.broadcast_to(np.asarray(case.cotangent, dtype=np.float64), t.shape)
    low, high = np.minimum(dout * lo, dout * hi), np.maximum(dout * lo, dout * hi)
    return np.where(at, np.clip(g, low, high), t)


def slip_hints(op, case, tensor, g, t):
    hints = []
    ns = Plain()
    a = {k: ns.input(v) for k, v in case.inputs.items()}
    for slip in op.slips:
        try:
            wrong = slip.vjp(ns, a, case.constants, case.hyper, ns.input(case.cotangent))
        except (ValueError, IndexError, FloatingPointError):
            continue
        key = tensor[1:] if tensor != "out" else "out"
        if key in wrong:
            w = np.asarray(wrong[key], dtype=np.float64).reshape(t.shape)
            far = float(np.linalg.norm(w - t))
            if far > 0 and np.all(np.isfinite(g)) and float(np.linalg.norm(g - w)) <= 0.1 * far:
                hints.append(slip.hint)
    return hints


def largest_count(*groups):
    """The most entries any one array in ``groups`` (dicts of arrays, or arrays) holds: the largest count a
    sum or mean in the case could run over."""
    sizes = [np.size(v) for g in groups for v in (g.values() if isinstance(g, dict) else (g,)) if v is not None]
    return max(sizes, default=1)


def scale_hint(row, most=None):
    """A hint when the wrong tensor is the truth times a telling factor: 2, 1/2, -1, or an integer n (or
    1/n) that could be a count of entries -- at most ``most``, the case's ``largest_count`` (None: no
    bound; a factor of 10^15 on a case of six entries is not a count, it is a different formula)."""
    scale = row.get("scale", math.nan)
    if not math.isfinite(scale) or abs(row.get("cosine", 0.0)) < 0.999:
        return []
    for value, words in ((2.0, "twice the truth: summed where it should be averaged, or counted twice?"),
                         (0.5, "half the truth: averaged where it should be summed, or a missing factor 2?"),
                         (-1.0, "the truth with its sign flipped")):
        if abs(scale - value) < 1e-3 * abs(value):
            return [words]
    count = (lambda n: most is None or n <= most)
    if scale > 2.5 and abs(scale - round(scale)) < 1e-3 * scale and count(round(scale)):
        return [f"{round(scale)} times the truth: a sum over {round(scale)} entries where a mean was due?"]
    if 0 < scale < 0.4 and abs(1 / scale - round(1 / scale)) < 1e-3 / scale and count(round(1 / scale)):
        return [f"1/{round(1 / scale)} of the truth: divided by {round(1 / scale)} once too often?"]
    return []


def judge(op, case, result, truth, bound):
    """Rows for ``out`` and each input's gradient (dict keys tensor, status, message, error, allowed,
    err_u, tol_u, margin, scale, cosine, entries, hints) and the case's class: "pass", "tie" or "bug"."""
    rows = [compare_tensor("out", result["out"], truth["out"], bound["out"], case.dtype)]
    for k in op.inputs:
        rows.append(compare_tensor("d" + k, result["grads"].get(k), truth["grads"][k], bound[k], case.dtype))
    extra = set(result["grads"]) - set(op.inputs)
    if extra:
        rows.append(_row("grads", "bug", f"gradients of unknown inputs: {sorted(extra)}"))
    for name in result.get("mutated", []):
        rows.append(_row("d" + name if name in op.inputs else name, "bug", f"overwrote its input {name}"))
    for row in rows:
        if row["status"] != "bug" or "error" not in row:
            continue
        g = result["out"] if row["tensor"] == "out" else result["grads"][row["tensor"][1:]]
        t = truth["out"] if row["tensor"] == "out" else truth["grads"][row["tensor"][1:]]
        if op.kinks is not None and row["tensor"][1:] in op.kinks(case.inputs, case.constants, case.hyper) \
                and np.all(np.isfinite(g)):
            fit = _kink_fit(op, case, row["tensor"][1:], g, t)
            if fit is not None and compare_tensor(row["tensor"], g, fit, bound[row["tensor"][1:]],
                                            case.dtype)["status"] == "pass":
                row.update(status="kink", message="a valid subgradient at a kink")
                continue
        if op.ties is not None and row["tensor"] == "dx" and np.all(np.isfinite(g)):
            fitted = _tie_fit(op, case, g, case.cotangent)
            if fitted is not None:
                fit, slack = fitted
                tied = compare_tensor("dx", g, fit, np.asarray(bound["x"]) + slack, case.dtype)
                if tied["status"] == "pass":
                    row.update(status="tie", message="a convex combination of tied maxima")
                    continue
        row["hints"] = (slip_hints(op, case, row["tensor"], g, t)
                        + scale_hint(row, largest_count(case.inputs, case.constants, case.cotangent)))
        if op.locate is not None and np.all(np.isfinite(g)):
            row["hints"] += op.locate(case, row["tensor"], np.asarray(g, dtype=np.float64), t, row["allowed"])
    statuses = {r["status"] for r in rows}
    cls = "bug" if "bug" in statuses else next((c for c in ("tie", "kink") if c in statuses), "pass")
    return rows, cls
