"""Property tests: on generated cases -- a quarter from the edge families (exact zeros at kinks,
pre-activations near the exp overflow, saturated tails, one-unit and square layers, batch 1,
wide batches, x = 0) -- the candidate (the NumPy reference unless ``--bpcheck-target`` names
another implementation), torch and jax each get the verdict "pass" from ``bpcheck.judge.judge``:
every tensor within the rounding the definitions allow, or a note (kink, convention,
dtype_limit), never bug or precision. And the truth itself is corroborated, in both dtypes: on
every tensor whose truth is finite some framework agrees with it within that tolerance (pass or
kink); tensors where every framework has a note only are counted and capped.

Case-level findings count as in every entry point: an implementation that overwrites its inputs
or keeps state across calls fails (``check_agreement``, tests/helpers/checks.py, calls it three
times a case).

Nothing is assumed away: a case the candidate declines is rejected and counted as a
Hypothesis event ("rejected: ..."; see ``--hypothesis-show-statistics``).
"""
from collections import Counter

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bpcheck.cases import strategies as bst
from bpcheck.core.spec import DTYPES
from bpcheck.judge.classify import NOTES
from bpcheck.judge.compare import describe, lookup
from bpcheck.judge.judge import judge
from bpcheck.run.backends import PythonBackend, load_target
from tests.helpers.checks import check_agreement


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


# Rows no framework can corroborate -- each framework's row a note: a documented convention (another
# formula by design) or a definition not finite in the dtype -- may be at most this share of the rows
# with a finite truth in one run of the property. Measured (all of them torch's clamped BCE with jax's
# NaN at a saturated sigmoid, where every backward row of the case is such a row): 1.2% of the rows of
# 300 cases per dtype drawn as ``bpcheck report`` draws them; in this property's own draws, which
# cluster (Hypothesis mutates one saturated draw into several), 0 to 30% in ~40 runs of 30 examples
# (median 0), 0 to 5.6% in runs of 200. Half the rows leaves that tail room and still fails a run
# where notes stand in for the truth on most tensors.
NOTES_ONLY_SHARE = 0.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_truth_is_corroborated_by_a_framework(dtype):
    """A wrong formula in the arbiter would put both frameworks off by O(1) on some tensor. So on every
    tensor whose truth is finite, torch or jax agrees with it: class pass, or kink (the other one-sided
    derivative at a relu input within rounding of 0, which both sides of the truth allow). A note does
    not corroborate; rows with notes only are counted (Hypothesis events) and capped at
    ``NOTES_ONLY_SHARE``; a row where a framework is off (bug, precision) and none agrees fails."""
    from bpcheck.exact.truth import exact
    from bpcheck.run.engine import _run_oracle
    tally = Counter()

    @given(case=bst.cases(dtypes=[dtype], arrays="seeded"))
    def corroborated(case):
        truth = exact(case)
        judged = {}
        for name in FRAMEWORKS:
            (result,) = _run_oracle(name, [case])
            with np.errstate(all="ignore"):
                judged[name] = {(r["layer"], r["tensor"]): r for r in judge(case, result, who=name, truth=truth).rows}
        for key in {**judged["torch"], **judged["jax"]}:
            t = lookup(truth, *key)
            if t is None or not np.all(np.isfinite(np.asarray(t, np.float64))):
                event("truth not finite")
                continue
            rows = [judged[name][key] for name in FRAMEWORKS if key in judged[name]]
            classes = sorted({r["class"] for r in rows})
            tally["rows"] += 1
            if any(c in ("pass", "kink") for c in classes):
                continue
            assert all(c in NOTES for c in classes), "no framework agrees with the truth:\n" + "\n".join(
                describe(r) for r in rows)
            tally["notes only"] += 1
            event(f"row corroborated only by notes: {', '.join(classes)}")

    corroborated()
    assert tally["notes only"] <= NOTES_ONLY_SHARE * tally["rows"], (
        f"{tally['notes only']} of {tally['rows']} rows corroborated only by notes (at most {NOTES_ONLY_SHARE:.0%})")


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
