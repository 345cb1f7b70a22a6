"""The op tolerance is tight, both ways, for every record and dtype.

The covering set of a fixed seed (``cases(op, dtypes=(dtype,), per_family=2, seed=0)``: every family,
two cases each) is run through a correct candidate built from the record (``tests.ops.common``), and
one tensor of its result at a time -- the output, then each input's gradient -- is moved in a random
direction (fixed by the case and the tensor):

- **caught**: by rel ||g*||, rel = 1e-4 in float32 and 1e-10 in float64 (the dense path's
  sensitivity target). On ordinary inputs (the families every op has: ``plain`` and
  ``uniform_cotangent``) the judgement must fail on that tensor in at least ``SHARE`` (90%) of the
  (case, tensor) pairs of an op. In the edge families the tolerance is what the rounding there
  requires -- a mean 10^4 times the spread costs float32 10^4 u in any correct implementation, a
  confident softmax's p - 1 is all rounding -- so a 1e-4 error can be within it; those fractions are
  measured, not asserted (``sensitivity_table``), and the quarter-tolerance test below holds there too. A tensor whose truth is 0 is left out, since rel ||g*|| moves
  nothing; "0" is ||g*|| <= 2^-100 ||s|| (s the rounding model's bound): an exact 0 reached by
  cancellation, which the certified truth leaves as a ball midpoint of about 2^-128 of its terms, or
  a value 2^100 below its own rounding noise (sigmoid'(-90) in float32, relu' on a negative tail).
- **passes**: by a quarter of that tensor's allowed error (the judge's own row on the unperturbed
  result). The judgement must pass, on every (case, tensor) pair.

"""
import zlib
from functools import lru_cache

import numpy as np
import pytest

from bpcheck import ops
from bpcheck.opcheck.candidates import Candidate
from bpcheck.ops.cases import cases
from bpcheck.opcheck.check import judge_case
from bpcheck.ops.exact import bound, truth
from bpcheck.opcheck.judge import judge
from bpcheck.ops.record import COMMON_FAMILIES
from tests.ops.common import DTYPES, plain_result

SEED = 0
PER_FAMILY = 2
REL = {"float32": 1e-4, "float64": 1e-10}
SHARE = 0.9
ZERO = 2.0**-100       # ||g*|| <= ZERO ||s||: a zero truth (see above)
NAMES = ops.names()


def _direction(rng, shape):
    """A random unit vector of ``shape`` (+-1 for a scalar)."""
    d = rng.standard_normal(shape)
    return d / np.linalg.norm(d) if d.ndim else (1.0 if d >= 0 else -1.0)


def _moved(result, key, size, direction, dtype):
    """``result`` with tensor ``key`` ("out" or an input) moved by size * direction, in ``dtype``."""
    if key == "out":
        g = np.asarray(np.asarray(result["out"], np.float64) + size * direction).astype(dtype)
        return {"out": g, "grads": result["grads"]}
    g = (np.asarray(result["grads"][key], np.float64) + size * direction).astype(dtype)
    return {"out": result["out"], "grads": {**result["grads"], key: g}}


def _row(rows, tensor):
    return next(r for r in rows if r["tensor"] == tensor)


def _fails(op, case, result, t, b, tensor):
    """Whether the judgement of ``result`` fails on ``tensor``. ``judge`` with the truth and bound
    computed once; where it fails and the op has conventions, ``check.judge_case`` (which tries
    them) has the last word."""
    rows, _ = judge(op, case, result, t, b)
    if _row(rows, tensor)["status"] == "bug" and op.conventions:
        rows, _ = judge_case(op, Candidate("perturbed", lambda op_, case_, given: (result["out"], result["grads"])),
                             case)
    return _row(rows, tensor)["status"] == "bug"


@lru_cache(maxsize=None)
def outcome(name, dtype):
    """{"caught": [(family, seed, tensor, caught, allowed / (rel ||g*||))], "quarter_failed": [...],
    "zero": [(family, seed, tensor)], "control_failed": [...]}."""
    op = ops.get(name)
    caught, quarter_failed, zero, control_failed = [], [], [], []
    for case in cases(op, dtypes=(dtype,), per_family=PER_FAMILY, seed=SEED):
        t, b = truth(op, case), bound(op, case)
        out, grads = plain_result(op, case)
        result = {"out": out, "grads": grads}
        rows, cls = judge(op, case, result, t, b)
        if cls != "pass":
            control_failed.append((case.describe(), [r["tensor"] for r in rows if r["status"] != "pass"]))
            continue
        rng = np.random.default_rng([SEED, zlib.crc32(f"{name} {case.family} {dtype}".encode()), case.seed])
        for r in rows:
            key = "out" if r["tensor"] == "out" else r["tensor"][1:]
            g_star = np.asarray(t["out"] if key == "out" else t["grads"][key], np.float64)
            d = _direction(rng, g_star.shape)
            norm_t, norm_s = float(np.linalg.norm(g_star)), float(np.linalg.norm(b[key]))
            if norm_t == 0 or (np.isfinite(norm_s) and norm_t <= ZERO * norm_s):
                zero.append((case.family, case.seed, r["tensor"]))
            else:
                size = REL[dtype] * norm_t
                caught.append((case.family, case.seed, r["tensor"],
                               _fails(op, case, _moved(result, key, size, d, dtype), t, b, r["tensor"]),
                               r["allowed"] / size))
            moved_rows, cls = judge(op, case, _moved(result, key, 0.25 * r["allowed"], d, dtype), t, b)
            if cls != "pass":
                quarter_failed.append((case.family, case.seed, r["tensor"], _row(moved_rows, r["tensor"])["margin"]))
    return {"caught": caught, "quarter_failed": quarter_failed, "zero": zero, "control_failed": control_failed}


def _misses_by_family(entries):
    out = {}
    for family, seed, tensor, ok, ratio in entries:
        if not ok:
            out.setdefault(family, []).append(f"{tensor} (tolerance {ratio:.3g} x the perturbation)")
    return out


PAIRS = [(name, dtype) for name in NAMES for dtype in DTYPES]


@pytest.mark.parametrize("name, dtype", PAIRS, ids=[f"{n}-{d}" for n, d in PAIRS])
def test_a_one_tensor_error_of_the_target_size_is_caught_in_90_percent(name, dtype):
    out = outcome(name, dtype)
    assert not out["control_failed"], f"the record-built candidate fails: {out['control_failed'][:3]}"
    entries = [e for e in out["caught"] if e[0] in COMMON_FAMILIES]
    share = sum(e[3] for e in entries) / len(entries)
    assert share >= SHARE, (
        f"{name} {dtype}: {share:.1%} of {len(entries)} perturbations by {REL[dtype]:g} ||g*|| caught "
        f"(target {SHARE:.0%}); misses by family: {_misses_by_family(entries)}")


@pytest.mark.parametrize("name, dtype", PAIRS, ids=[f"{n}-{d}" for n, d in PAIRS])
def test_a_quarter_of_the_tolerance_passes(name, dtype):
    out = outcome(name, dtype)
    assert not out["control_failed"], f"the record-built candidate fails: {out['control_failed'][:3]}"
    assert not out["quarter_failed"], f"a quarter of the tolerance failed: {out['quarter_failed'][:5]}"


def sensitivity_table():
    """{(op, dtype): {family: (caught, perturbed)}}: the measured fractions, every family (the README's)."""
    table = {}
    for name, dtype in PAIRS:
        cells = table.setdefault((name, dtype), {})
        for family, _, _, ok, _ in outcome(name, dtype)["caught"]:
            caught, total = cells.get(family, (0, 0))
            cells[family] = (caught + ok, total + 1)
    return table
