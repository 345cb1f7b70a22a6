"""Each edge family reaches its region, on every draw: a meta-test of the case recipe (as
array-api-tests' meta tests check their strategies).

For every value family, dtype and activation the default grid draws (``generate.edge_grid``), and
for several seeds, the case's target layers -- the first hidden layer (the focus activation) and
the output layer -- are checked in the float64 forward pass of the case's own (cast) values:

- zero_kinks: an exact zero z = 0 at the input of every layer, the logits included;
- saturated / saturated_neg, exp_overflow / exp_overflow_neg: every pre-activation of a target
  layer has the family's sign and lies in its range (give or take 1), and every threshold of
  ``strategies.THRESHOLDS`` inside the range has target units on both sides;
- exp_overflow with softmax: some row's largest logit lies past the underflow threshold below the
  batch's largest, and some target logit lies past it below its own row's largest.

Each check is shown able to fail on a plain case.
"""
import numpy as np
import pytest

from bpcheck.cases import strategies as bst
from bpcheck.cases.generate import coverage, edge_grid, generate_cases, Support
from bpcheck.core import rounding
from bpcheck.core.spec import ACTIVATIONS, DTYPES

SEEDS = (1, 2, 3)


def forward(case):
    """Pre-activations of every layer in float64 from the case's own values."""
    a, out = np.asarray(case.x, np.float64), []
    for i, layer in enumerate(case.spec["layers"]):
        z = a @ np.asarray(case.params[f"layers.{i}.W"], np.float64).T + np.asarray(case.params[f"layers.{i}.b"],
                                                                                      np.float64)
        out.append(z)
        a = rounding.activation(layer["activation"], z)[0]
    return out


def _grid_cases(family, seed):
    cases = [c for c in generate_cases(seed, 1) if c.meta["family"] == family]
    assert len(cases) == len(edge_grid(Support().cells(), list(ACTIVATIONS)))
    return cases


def zeros_everywhere(case):
    return all(np.any(z == 0) for z in forward(case))


def in_region(case, family):
    """The target layers wholly in the family's signed range, both sides of every threshold inside."""
    sign, ranges = bst.REGIONS[family]
    lo, hi = ranges[case.spec["dtype"]]
    zs = forward(case)
    targets = [len(zs) - 1] + ([0] if len(zs) > 1 and case.spec["loss"] not in bst.LAST_ACTIVATION else [])
    for i in targets:
        if case.spec["loss"] == "softmax_cross_entropy" and i == len(zs) - 1 and family == "exp_overflow":
            continue                         # placed by rows (``softmax_spans``)
        m = sign * zs[i]
        if not (np.all(m >= lo - 1) and np.all(m <= hi + 1)):
            return False
        if zs[i].shape[1] >= 2:
            for t in bst.THRESHOLDS[case.spec["dtype"]].values():
                if lo < t < hi and not (np.any(m < t) and np.any(m > t)):
                    return False
    return True


def softmax_spans(case):
    """Some row's max past the underflow point below the batch max, and some target logit past it
    below its own row's max."""
    z = forward(case)[-1]
    gap = bst.THRESHOLDS[case.spec["dtype"]]["exp underflows to 0"]
    row_max = z.max(axis=1)
    target_gap = row_max - z[np.arange(z.shape[0]), case.y]
    return bool(np.ptp(row_max) > gap and np.any(target_gap > gap))


@pytest.mark.parametrize("seed", SEEDS)
def test_zero_kinks_puts_a_zero_at_every_layer(seed):
    cases = _grid_cases("zero_kinks", seed)
    bad = [c.id for c in cases if not zeros_everywhere(c)]
    assert not bad, bad


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", sorted(bst.REGIONS))
def test_value_families_reach_their_region(family, seed):
    cases = _grid_cases(family, seed)
    bad = [c.id for c in cases if not in_region(c, family)]
    assert not bad, bad
    assert {c.spec["dtype"] for c in cases} == set(DTYPES)


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_rows_and_targets_lie_past_the_underflow(seed):
    cases = [c for c in _grid_cases("exp_overflow", seed) if c.spec["loss"] == "softmax_cross_entropy"]
    assert {c.spec["dtype"] for c in cases} == set(DTYPES)
    bad = [c.id for c in cases if not softmax_spans(c)]
    assert not bad, bad


def test_the_checks_can_fail():
    plain = [c for c in generate_cases(1, 1, edge_share=0)]
    assert not all(zeros_everywhere(c) for c in plain)
    assert not any(in_region(c, "saturated") for c in plain)
    assert not any(softmax_spans(c) for c in plain if c.spec["loss"] == "softmax_cross_entropy")


@pytest.mark.parametrize("seed", SEEDS)
def test_every_run_meets_the_whole_grid(seed):
    """Every (family x activation x dtype) at a hidden layer and at the output, and every
    (family x loss x dtype), in the default run of any seed -- and in a narrowed one."""
    for options in ({}, {"dtypes": ["float64"], "losses": ["softmax_cross_entropy", "mse"]}):
        grid = coverage(generate_cases(seed, 1, **options))
        assert all(g["met"] == g["of"] > 0 for g in grid.values()), grid


def test_coverage_counts_what_is_missing():
    cases = [c for c in generate_cases(1, 1) if c.meta["family"] != "saturated_neg"]
    grid = coverage(cases)
    assert all(g["met"] < g["of"] for g in grid.values())
    assert any("saturated_neg" in m for g in grid.values() for m in g["missing"])


@pytest.mark.parametrize("family", sorted(bst.REGIONS) + ["zero_kinks"])
def test_the_hypothesis_strategy_reaches_the_region_too(family):
    """The property tests' strategy (``strategies.cases``) runs the same recipe: every case it draws
    for a value family has its output layer in the region (zero_kinks: a zero at every layer)."""
    from hypothesis import given, settings

    @settings(max_examples=25, deadline=None, database=None)
    @given(bst.cases(families=(family,), arrays="seeded", max_depth=3))
    def check(case):
        if family == "zero_kinks":
            assert zeros_everywhere(case)
            return
        z = forward(case)[-1]
        sign, ranges = bst.REGIONS[family]
        lo, hi = ranges[case.spec["dtype"]]
        if not (case.spec["loss"] == "softmax_cross_entropy" and family == "exp_overflow"):
            assert np.all(sign * z >= lo - 1) and np.all(sign * z <= hi + 1)
        else:
            assert softmax_spans(case)
    check()
