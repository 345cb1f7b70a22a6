"""The bug zoo keeps bpcheck honest: ``bpcheck selftest`` on every member, default options.

Every mutant (``bug_*``) is caught -- exit 1 (or 2 where it raises on some shapes), the
shrunk diagnosis naming the expected class and first wrong tensor -- and every correct
member (``ok_*``) passes. The members and their expected verdicts are in tests/meta/zoo.
"""
import pytest

from bpcheck.cli.selftest import run_member
from bpcheck.proof.zoo import members

MEMBERS = members()


def test_the_zoo_is_big_enough():
    bugs = [m for m in MEMBERS if m[2]["verdict"] == "fail"]
    assert len(bugs) >= 30 and len(MEMBERS) - len(bugs) >= 5


@pytest.mark.parametrize("name, path, expected", MEMBERS, ids=[m[0] for m in MEMBERS])
def test_selftest_member(name, path, expected, tmp_path):
    row = run_member(name, path, expected, tmp_path, jobs=1)
    assert row["ok"], row
