"""The op zoo through bpcheck itself: every slip fails on every seed, at its tensor; correct layers pass.

Each member of ``tests/meta/op_zoo`` (46 realistic slips, 3 or more per op) is checked with
``bpcheck.opcheck.check.check_op`` on seeds 1-10: the verdict must be "fail" on every seed -- a catch that
depends on the seed is a miss -- and the first wrong tensor of the shrunk case must be the member's
``EXPECTED["tensor"]`` (or one listed in ``EXPECTED["also"]`` with the reason beside it). The correct
implementations (the reference, the second implementation, and each framework's built-ins) pass on the
same seeds: the control that shows these failures are not false alarms.
"""
from pathlib import Path

import pytest

from bpcheck import ops
from bpcheck.opcheck import candidates
from bpcheck.opcheck.check import check_op

ZOO = Path(__file__).parent / "op_zoo"
MEMBERS = sorted(p.name for p in ZOO.glob("bug_*.py"))
SEEDS = range(1, 11)
CORRECT = ("reference/layers.py", "examples/cs231n_layers.py")
ROOT = Path(__file__).resolve().parents[2]


def _first_wrong(report):
    return next(r["tensor"] for r in report.first["rows"] if r["status"] == "bug")


@pytest.mark.parametrize("name", MEMBERS)
def test_every_slip_fails_on_every_seed_at_its_tensor(name):
    member = candidates.load_module(ZOO / name)
    expected = member.EXPECTED
    allowed = {expected["tensor"], *expected.get("also", ())}
    for seed in SEEDS:
        report = check_op(expected["op"], layers=member, extended=True, seed=seed, name=name)
        assert report.verdict == "fail", f"{name} passed on seed {seed}"
        assert _first_wrong(report) in allowed, (name, seed, report.summary())


@pytest.mark.parametrize("path", CORRECT)
@pytest.mark.parametrize("op", [n for n, o in ops.REGISTRY.items() if o.cs231n])
def test_correct_layers_pass_on_the_same_seeds(path, op):
    for seed in SEEDS:
        report = check_op(op, layers=str(ROOT / path), extended=True, seed=seed)
        assert report.verdict == "pass", report.summary()
        assert report.notes.get("unsupported", 0) == 0


def test_every_layer_op_has_three_slips_in_the_zoo():
    """Every op with a CS231n-style signature but CS231n's own softmax_loss (a cross_entropy special
    case) has three or more members. The activations, losses and softmax have the dense zoo and their
    records' slips (tests/ops/test_records.py)."""
    counts = {}
    for name in MEMBERS:
        op = candidates.load_module(ZOO / name).EXPECTED["op"]
        counts[op] = counts.get(op, 0) + 1
    layered = [n for n, r in ops.REGISTRY.items() if r.cs231n and n != "softmax_loss"]
    assert {op: counts.get(op, 0) for op in layered if counts.get(op, 0) < 3} == {}
