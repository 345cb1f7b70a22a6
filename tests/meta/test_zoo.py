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


def test_the_selftest_command_writes_its_report(tmp_path):
    """``bpcheck selftest`` itself, end to end on two members (one caught, one passing): the table on
    stdout, selftest.md and selftest.json written, exit 0 when every member is as expected."""
    import json

    from click.testing import CliRunner

    from bpcheck.cli.selftest import selftest_command
    result = CliRunner().invoke(selftest_command, ["--members", "bug_weight_decay,ok_textbook", "--jobs", "1",
                                                   "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "bug_weight_decay" in result.output and "ok_textbook" in result.output
    report = json.loads((tmp_path / "selftest.json").read_text())
    assert [m["member"] for m in report["members"]] == ["bug_weight_decay", "ok_textbook"]
    assert (tmp_path / "selftest.md").read_text().startswith("# bpcheck selftest")
