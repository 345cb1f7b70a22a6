"""The whole-network proofs, in small: bpcheck beside gradcheck and check_grads on graphs
(``bpcheck.opcheck.graph_baselines``) and the graph false-alarm campaign (``bpcheck.opcheck.graph_campaign``).

The baselines on one architecture (residual_mlp: its zoo member and its four correct implementations,
float64, one case per family) have a row per member and implementation and bpcheck catches the member
on every case and passes the correct ones; the campaign on 20 cases has no false alarm, streams a line
per case and resumes after an interruption; each check can fail: a known-bad member is a catch, and a
known-bad network injected as a "correct" implementation is counted as false alarms.
"""
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

from bpcheck.opcheck import graph_baselines, graph_campaign  # noqa: E402

ARCH = "residual_mlp"
MEMBER = "bug_residual_assigned"
BAD = str(graph_baselines.ZOO / f"{MEMBER}.py") + ":net"


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    out = tmp_path_factory.mktemp("graph_baselines")
    summary = graph_baselines.compare(out, per_family=1, members=(MEMBER,), archs=(ARCH,), dtypes=("float64",),
                                      echo=lambda m: None)
    return out, summary


def test_the_baselines_have_a_row_per_member_and_implementation(baselines):
    out, summary = baselines
    assert json.loads((out / "graph_baselines.json").read_text()) == summary
    rows = summary["implementations"]
    assert [(r["name"], r["kind"]) for r in rows] == [
        (MEMBER, "mutant"), ("reference/networks.py", "correct"), ("examples/numpy_networks.py", "correct"),
        ("examples/torch_networks.py", "correct"), ("records", "correct")]
    for r in rows:
        assert [(x["tool"], x["dtype"]) for x in r["results"]] == [(t, "float64") for t in graph_baselines.TOOLS]
        assert all(x["cases"] == 2 and set(x["verdicts"]) <= set("pfe") for x in r["results"])
    md = (out / "graph_baselines.md").read_text()
    assert md.startswith("# bpcheck, gradcheck and check_grads on whole networks")
    assert f"| {MEMBER} | {ARCH} |" in md and "/tmp" not in md and "/work" not in md


def test_bpcheck_catches_the_member_on_every_case_and_passes_the_correct_ones(baselines):
    _, summary = baselines
    table = {t["key"]: t for t in summary["summary"]}
    assert table["bpcheck float64"]["mutants_caught_cleanly"] == 1
    assert table["bpcheck float64"]["false_alarms"] == 0
    member = summary["implementations"][0]
    assert next(x for x in member["results"] if x["tool"] == "bpcheck")["verdicts"] == "ff"
    assert table["gradcheck float64"]["false_alarms"] == 0 and table["check_grads float64"]["false_alarms"] == 0


def test_the_campaign_has_no_false_alarm_streams_and_resumes(tmp_path):
    summary = graph_campaign.run(20, tmp_path, jobs=1, echo=lambda m: None)
    assert summary["cases"] == 20 and summary["alarms"] == 0
    assert summary["judgements"] + summary["declined"] == 20 * len(graph_campaign.WHO)
    assert {g["arch"] for g in summary["groups"]} == {"residual_mlp", "cnn"}      # the plan's first 20 cells
    path = tmp_path / "graph_false_alarms.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 20 and len({json.loads(line)["case"] for line in lines}) == 20
    path.write_text("\n".join(lines[:12]) + "\n" + lines[12][:40])                   # killed mid-write
    again = graph_campaign.run(20, tmp_path, jobs=1, resume=True, echo=lambda m: None)
    assert again["resumed"] == 12 and again["cases"] == 20 and again["alarms"] == 0
    assert [json.loads(line)["case"] for line in path.read_text().splitlines()] == \
        [json.loads(line)["case"] for line in lines]
    assert "**0 false alarms**" in (tmp_path / "graph_false_alarms.md").read_text()


def test_the_campaign_counts_an_injected_wrong_implementation_as_false_alarms(tmp_path):
    summary = graph_campaign.run(6, tmp_path, jobs=1, who=("reference", BAD), archs=(ARCH,), echo=lambda m: None)
    assert summary["alarms_by_who"] == {"reference": 0, BAD: 6}
    alarm = summary["first_alarms"][0]
    assert alarm["who"] == BAD and alarm["arch"] == ARCH and alarm["culprit"]["node"] == "x"
    assert {"family", "dtype", "seed", "size"} <= set(alarm)
