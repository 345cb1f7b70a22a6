"""Every record of the op catalog, checked from the record alone: a new record gets these tests.

- the record's VJP agrees with 60-digit central differences of its forward (``exact.crosscheck``,
  which shares nothing with the VJP as written), on plain cases in both dtypes;
- the truth is certified (the bits it took are reported) on every family;
- the record's bindings to PyTorch's and JAX's own built-ins pass the judgement (they are the
  oracles a submission is compared with, so a false alarm here is a false alarm everywhere);
- both CS231n-style layer modules (``reference/layers.py``, written with loops and staged backward
  passes, and ``examples/cs231n_layers.py``, vectorised closed forms) pass, contract extensions
  included;
- a candidate built from the record passes, and the same candidate with one of the record's slips
  fails, first on a tensor the slip gets wrong, with the slip's hint on that tensor.

JAX run eagerly compiles every primitive for every new shape (0.35 s a case on one core; 0.16 s
with the whole binding under ``jax.jit``). So the record's JAX binding, exactly as
``candidates.builtin`` runs it, is judged on the plain case and on its own inputs under an all-ones
cotangent (no new shape), and the same binding under ``jax.jit`` on one case of every edge family,
the dtype alternating along the family list.
"""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bpcheck import ops
from bpcheck.opcheck.candidates import Candidate, Unsupported, builtin
from bpcheck.ops.cases import cases, draw_case
from bpcheck.opcheck.check import check_op, diagnosis, judge_case
from bpcheck.ops.exact import MAX_BITS, START_BITS, crosscheck, truth
from tests.ops.common import DTYPES, first_bug, record_candidate, slip_grads

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"reference": ROOT / "reference" / "layers.py", "example": ROOT / "examples" / "cs231n_layers.py"}
NAMES = ops.names()
CROSSCHECK_SEEDS = (0, 1, 2)
CROSSCHECK_REL = 1e-12
SLIPS = [(name, slip.name) for name in NAMES for slip in ops.get(name).slips]
# The cross-check's mpmath namespace (exact._Mp) inherits Exact.matmul, which now builds a flint arb_mat
# from its entries: the mpf values are rounded to arb's default 53 bits, the 1e-25 step is lost, and the
# central differences of a product come out 0 (dx, dw: relative error 1) or rounding noise / 2e-25 (db 3e9).
CROSSCHECK_BROKEN = {}   # op -> why its crosscheck cannot run: none today


def _with(framework):
    return [name for name in NAMES if getattr(ops.get(name), framework) is not None]


# --- the record's own definition -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=CROSSCHECK_BROKEN[n]))
                                  if n in CROSSCHECK_BROKEN else n for n in NAMES])
def test_the_vjp_agrees_with_central_differences_of_the_forward(name, dtype):
    op = ops.get(name)
    for seed in CROSSCHECK_SEEDS:
        case = draw_case(op, "plain", dtype, seed)
        if op.ties is not None and any(len(p) > 1 for p in op.ties(case.inputs, case.constants, case.hyper)):
            continue                                    # a tied max: the forward has a kink there
        kinks = op.kinks(case.inputs, case.constants, case.hyper) if op.kinks is not None else {}
        if any(np.any(mask) for mask, _, _ in kinks.values()):
            continue                                    # an entry at a kink
        t, cc = truth(op, case), crosscheck(op, case)
        for k in op.inputs:
            err = float(np.linalg.norm(t["grads"][k] - cc[k]))
            norm = float(np.linalg.norm(t["grads"][k]))
            assert norm > 0 and err <= CROSSCHECK_REL * norm, (
                f"{case.describe()} seed {seed}: d{k} of the VJP is {err / max(norm, 1e-300):.3g} (relative) "
                f"from central differences of the forward")


@pytest.mark.parametrize("name", NAMES)
def test_the_truth_is_certified_on_every_family(name):
    op = ops.get(name)
    for case in cases(op, DTYPES, per_family=1, seed=0):
        t = truth(op, case)
        assert isinstance(t["bits"], int) and START_BITS <= t["bits"] <= MAX_BITS, (case.describe(), t["bits"])
        assert set(t["grads"]) == set(op.inputs), case.describe()
        for k in op.inputs:
            assert t["grads"][k].shape == case.inputs[k].shape, (case.describe(), k)
            assert np.all(np.isfinite(t["grads"][k])), (case.describe(), k)
        assert np.shape(t["out"]) == np.shape(case.cotangent) and np.all(np.isfinite(t["out"])), case.describe()


# --- the oracles: each framework's own built-ins ---------------------------------------------------

@pytest.mark.parametrize("name", _with("torch"))
def test_the_torch_binding_passes(name):
    pytest.importorskip("torch")
    op = ops.get(name)
    report = check_op(op, candidate=builtin(op, "torch"), per_family=2)
    assert report.verdict == "pass" and report.cases > 0, report.summary()


def _jitted(op):
    """The record's JAX binding under ``jax.jit`` (one compilation a case, not one a primitive), through
    ``jax.vjp`` as ``candidates.builtin`` calls it, its documented limits honoured."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.nn  # noqa: F401
    limit = dict(op.limits).get("jax")

    def call(op_, case, given):
        names, hyper = list(case.inputs), dict(case.hyper)
        a = {k: given[k] for k in names}
        c = {k: jax.numpy.asarray(given[k]) for k in case.constants}
        reason = limit(a, case.constants, hyper) if limit is not None else None
        if reason:
            raise Unsupported(f"jax {op.name}: {reason}")
        fn = jax.jit(lambda *xs: op.jax(jax, dict(zip(names, xs)), c, hyper))
        out, pullback = jax.vjp(fn, *[jax.numpy.asarray(a[k]) for k in names])
        grads = pullback(jax.numpy.asarray(case.cotangent).astype(out.dtype))
        return np.asarray(out), {k: np.asarray(g) for k, g in zip(names, grads)}

    return Candidate(f"jax jit {op.name}", call)


def _judged(op, candidate, cases_):
    judged = 0
    for case in cases_:
        rows, cls = judge_case(op, candidate, case)
        assert cls != "bug", diagnosis({"case": case, "rows": rows})
        judged += cls != "unsupported"
    return judged


@pytest.mark.parametrize("name", _with("jax"))
def test_the_jax_binding_passes_on_a_plain_case_and_under_a_uniform_cotangent(name):
    """``candidates.builtin`` itself: the plain case, then its own inputs under an all-ones cotangent."""
    pytest.importorskip("jax")
    op = ops.get(name)
    plain = draw_case(op, "plain", "float32", 0)
    uniform = dataclasses.replace(plain, family="uniform_cotangent", cotangent=np.ones_like(plain.cotangent))
    assert _judged(op, builtin(op, "jax"), [plain, uniform]), f"{name}: every case declined"


@pytest.mark.parametrize("name", _with("jax"))
def test_the_jitted_jax_binding_passes_on_every_edge_family(name):
    """One case of each edge family, the dtype alternating along the family list from float64."""
    pytest.importorskip("jax")
    op = ops.get(name)
    edges = [f for f in op.families if f not in ("plain", "uniform_cotangent")]
    cases_ = [draw_case(op, family, DTYPES[(i + 1) % 2], 0) for i, family in enumerate(edges)]
    assert _judged(op, _jitted(op), cases_) or not cases_, f"{name}: every case declined"


# --- the two hand-written layer modules ------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in NAMES if ops.get(n).cs231n is not None])
@pytest.mark.parametrize("module", sorted(LAYERS))
def test_a_layers_module_passes(module, name):
    report = check_op(ops.get(name), layers=str(LAYERS[module]), extended=True, per_family=4)
    assert report.verdict == "pass" and report.cases > 0, report.summary()
    assert "unsupported" not in report.notes, report.summary()


# --- candidates built from the record: the control and its slips -----------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_the_record_as_a_candidate_passes(name):
    op = ops.get(name)
    report = check_op(op, candidate=record_candidate(op), per_family=4)
    assert report.verdict == "pass", report.summary()


@pytest.mark.parametrize("name, slip_name", SLIPS, ids=[f"{n}-{s}" for n, s in SLIPS])
def test_a_slip_is_caught_on_a_tensor_it_gets_wrong_with_its_hint(name, slip_name):
    op = ops.get(name)
    slip = next(s for s in op.slips if s.name == slip_name)
    report = check_op(op, candidate=record_candidate(op, slip), per_family=4)
    assert report.verdict == "fail", f"slip {slip_name} not caught: {report.summary()}"
    case, rows = report.first["case"], report.first["rows"]
    wrong = first_bug(rows)
    overridden = {"d" + k for k in slip_grads(op, slip, case)}
    assert wrong is not None and wrong["tensor"] in overridden, (
        f"first failing tensor {wrong and wrong['tensor']}, the slip overrides {sorted(overridden)}\n"
        + diagnosis(report.first))
    assert slip.hint in wrong.get("hints", []), (
        f"hint {slip.hint!r} missing from {wrong['tensor']}'s hints {wrong.get('hints')}\n" + diagnosis(report.first))
