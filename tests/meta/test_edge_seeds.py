"""Every edge-only member of the bug zoo is caught by the default run's cases, whatever the seed.

A zoo member whose ``EXPECTED["family"]`` is an edge family shows its bug only on cases of that
kind (an exact zero, an exp overflow, a saturated tail, a square layer, batch 1...). The
default run -- ``generate_cases(seed, 1)``, what ``bpcheck validate --seed seed`` draws -- must
draw such a case for every seed, not only for bpcheck's default one: the edge families exist so
that these bugs are found on purpose, not by luck. For each member and each of the seeds 1..10,
this asserts that the run's cases hold one the member fails (``bpcheck.judge.judge.judge``, in
process), and stops at the first: the cases are tried in an order that reaches it soon (the
member's own family first, then the other edge families, then the plain cases), which changes
no case, only the time to find one.

A member that raises on a case has not passed it, so that counts as caught too (some members
raise on shapes their bug cannot handle), but it is reported as a warning: a failing verdict is
what a catch should look like.
"""
import functools
import warnings

import numpy as np
import pytest

from bpcheck.cases import strategies as bst
from bpcheck.cases.generate import generate_cases
from bpcheck.core.spec import validate_result
from bpcheck.judge.judge import judge
from tests.meta import zoo

SEEDS = range(1, 11)
# Mutants only: loading ok_torch_autograd / ok_jax_grad would import torch and JAX for nothing.
EDGE_MEMBERS = [name for name in zoo.MEMBERS if name.startswith("bug_")
                and zoo.load(name).EXPECTED["family"] not in (None, "plain")]


@functools.lru_cache(maxsize=None)
def default_run(seed):
    """The cases of ``bpcheck validate --seed seed`` with default options."""
    return tuple(generate_cases(seed, 1))


def search_order(cases, family):
    """The same cases, the member's own family first, then the other edge families, then plain."""
    rank = {family: 0}
    return sorted(cases, key=lambda c: rank.get(c.meta["family"], 1 if c.meta["family"] != "plain" else 2))


def first_catch(member, cases):
    """(case, how) for the first case ``member`` does not pass -- how is "fail" or the exception
    it raised -- or (None, None)."""
    for case in cases:
        try:
            with np.errstate(all="ignore"):
                result = validate_result(member.backprop(case.spec, case.params, case.x, case.y), case)
        except Exception as exc:            # noqa: BLE001 -- any exception is "not a pass"
            return case, f"{type(exc).__name__}: {exc}"
        if judge(case, result).verdict() == "fail":
            return case, "fail"
    return None, None


def test_edge_members_found():
    """The selection is not empty and names only families the generator draws."""
    assert len(EDGE_MEMBERS) >= 10
    for name in EDGE_MEMBERS:
        assert zoo.load(name).EXPECTED["family"] in bst.EDGE_FAMILIES, name


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", EDGE_MEMBERS)
def test_default_run_catches_edge_member(name, seed):
    member = zoo.load(name)
    family = member.EXPECTED["family"]
    cases = default_run(seed)
    case, how = first_catch(member, search_order(cases, family))
    assert case is not None, (f"{name} (family {family}) passes all {len(cases)} cases of the default run "
                              f"with seed {seed}: no case of the run shows its bug "
                              f"({sum(c.meta['family'] == family for c in cases)} cases of its family)")
    if how != "fail":
        warnings.warn(f"{name}, seed {seed}: caught only by an exception on {case.id}: {how}", stacklevel=1)
