"""Property tests: on generated cases -- a quarter from the edge families (exact zeros at kinks,
pre-activations near the exp overflow, saturated tails, one-unit and square layers, batch 1,
wide batches, x = 0) -- the candidate (the NumPy reference unless ``--bpcheck-target`` names
another implementation), torch and jax each get the verdict "pass" from ``bpcheck.judge``:
every tensor within the rounding the definitions allow, or a note (kink, convention,
dtype_limit), never bug or precision. And the truth itself is corroborated: on every tensor
some framework agrees with it within that tolerance.

Case-level findings count as in every entry point: an implementation that overwrites its inputs
or keeps state across calls fails (``check_agreement`` calls it three times a case).

Nothing is assumed away: a case the candidate declines is rejected and counted as a
Hypothesis event ("rejected: ..."; see ``--hypothesis-show-statistics``).
"""
import numpy as np
import pytest
from hypothesis import currently_in_test_context, event, given, note, reject
from hypothesis import strategies as st

from bpcheck import strategies as bst
from bpcheck.backends import PythonBackend, Unsupported, load_target
from bpcheck.compare import describe
from bpcheck.judge import judge
from bpcheck.spec import DTYPES


def check_agreement(case, candidate):
    """Assert that ``candidate`` passes ``case`` (notes allowed), case-level findings included: inputs
    overwritten, unknown gradient keys, and state kept across calls (``bpcheck.judge.state_findings``
    calls the candidate twice more on every case, so that a failure replays the same way); return the
    Judgement. Raises AssertionError naming each failing row and finding; a case the candidate
    declines is rejected (Hypothesis's ``reject``)."""
    try:
        with np.errstate(all="ignore"):
            result = candidate.run(case)
            j = judge(case, result, who=candidate.name, rerun=candidate.run)
    except Unsupported as exc:
        event(f"rejected: {str(exc)[:60]}")
        reject()
    if currently_in_test_context():
        note(f"spec: {case.spec}, batch {case.batch}, family {case.meta.get('family')}")
        event(f"family {case.meta.get('family')}")
        for n in j.notes:
            event(f"note: {n['class']}")
    bad = j.failures + [f for f in j.findings if f["class"] in ("bug", "precision")]
    assert j.verdict() == "pass", "\n".join(describe(r) if "tensor" in r else r["message"] for r in bad)
    return j


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_candidate_agrees_with_truth(candidate, dtype, data):
    case = data.draw(bst.cases(dtypes=[dtype], arrays="seeded"), label="case")
    check_agreement(case, candidate)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_candidate_agrees_on_simple_values(candidate, dtype, data):
    """Every entry drawn by Hypothesis: zeros, repeated and round values, which shrink to readable
    cases (small nets, so that a draw stays within Hypothesis's data budget)."""
    case = data.draw(bst.cases(dtypes=[dtype], arrays="drawn", max_depth=3, max_width=6), label="case")
    check_agreement(case, candidate)


FRAMEWORKS = {name: load_target(name) for name in ("torch", "jax")}


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
@given(data=st.data())
def test_framework_agrees_with_truth(framework, data):
    case = data.draw(bst.cases(arrays="seeded"), label="case")
    check_agreement(case, FRAMEWORKS[framework])


@given(case=bst.cases(dtypes=["float64"], arrays="seeded"))
def test_truth_is_corroborated_by_a_framework(case):
    """A wrong formula in the arbiter would put both frameworks off by O(1) on some tensor."""
    from bpcheck.engine import _run_oracle
    from bpcheck.truth import exact
    truth = exact(case)
    judged = {}
    for name in FRAMEWORKS:
        (result,) = _run_oracle(name, [case])
        with np.errstate(all="ignore"):
            judged[name] = {(r["layer"], r["tensor"]): r for r in judge(case, result, who=name, truth=truth).rows}
    for key in judged["torch"]:
        rows = [judged[name][key] for name in FRAMEWORKS if key in judged[name]]
        assert any(r["class"] in ("pass", "kink", "convention", "dtype_limit") for r in rows), \
            "\n".join(describe(r) for r in rows)


def test_check_agreement_can_fail():
    """The property's check fails on a known-bad implementation (W_0's gradient doubled)."""
    from reference.network import backprop

    def doubled(spec, params, x, y):
        out = backprop(spec, params, x, y)
        out["grads"]["layers.0.W"] = out["grads"]["layers.0.W"] * 2
        return out
    case = bst.numpy_case(np.random.default_rng(0), dtypes=["float32"])
    with pytest.raises(AssertionError, match="layer 0 .* W .*class bug"):
        check_agreement(case, PythonBackend(doubled, "doubled"))
