"""bpcheck beside gradcheck and check_grads on the op zoo (bpcheck.opcheck.baselines), in small: two affine
members and the reference's affine, float64 only. The reports have their structure, every tool ran
on every case, and bpcheck catches both mutants and passes the reference."""
import json

import pytest

from bpcheck.opcheck import baselines

MEMBERS = ("bug_affine_db_mean", "bug_affine_dw_transposed")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ops_baselines")
    echoed = []
    summary = baselines.compare(out, seed=0, members=MEMBERS, ops_=("affine",), correct=("reference",),
                                dtypes=("float64",), echo=echoed.append)
    return out, summary, echoed


def test_the_reports_are_written_with_their_structure(run):
    out, summary, echoed = run
    assert json.loads((out / "ops_baselines.json").read_text()) == summary
    assert len(echoed) == 3
    assert summary["mutants"] == 2 and summary["correct_pairs"] == 1 and summary["dtypes"] == ["float64"]
    assert [t["key"] for t in summary["summary"]] == ["bpcheck check_op", "bpcheck float64", "gradcheck float64",
                                                      "check_grads float64"]
    rows = summary["implementations"]
    assert [(r["name"], r["op"], r["kind"]) for r in rows] == [
        ("bug_affine_db_mean", "affine", "mutant"), ("bug_affine_dw_transposed", "affine", "mutant"),
        ("reference/layers.py", "affine", "correct")]
    assert rows[0]["edge_only"] and not rows[1]["edge_only"]       # "a batch of more than one row" / "always: ..."
    families = list(baselines.ops.get("affine").families)
    for r in rows:
        assert len(r["results"]) == 4
        for result in r["results"][1:]:                           # the shared cases: one per family
            assert result["families"] == families and len(result["verdicts"]) == len(families)
            assert set(result["verdicts"]) <= set("pfe")
    lines = [json.loads(line) for line in (out / "ops_baselines.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 4 and {line["tool"] for line in lines} == set(baselines.TOOLS)
    md = (out / "ops_baselines.md").read_text()
    assert md.startswith("# bpcheck, gradcheck and check_grads on the op zoo")
    assert "python -m bpcheck.opcheck.baselines --out reports" in md
    assert "| bug_affine_dw_transposed | affine |" in md and "/work" not in md and "/tmp" not in md


def test_bpcheck_catches_the_mutants_and_passes_the_reference(run):
    _, summary, _ = run
    table = {t["key"]: t for t in summary["summary"]}
    for key in ("bpcheck check_op", "bpcheck float64"):
        assert table[key]["mutants_caught"] == 2 and table[key]["edge_only_caught"] == 1
        assert table[key]["false_alarms"] == 0
    mutant, transposed, reference = summary["implementations"]
    check_op = mutant["results"][0]
    assert check_op["verdict"] == "fail" and check_op["first_wrong"] == "db"
    assert reference["results"][0]["verdict"] == "pass"
    # the other tools on the reference's affine: plain float64 cases, nothing for them to trip on
    assert all(not r["flagged"] and r["verdicts"] == "p" * r["cases"] for r in reference["results"][1:])
    # a dw of the wrong shape is raised by the frameworks' own shape checks
    assert all(r["raised"] == r["cases"] for r in transposed["results"][2:])
    assert {t["key"]: t["mutants_caught_cleanly"] for t in summary["summary"]}["bpcheck float64"] == 2


def test_a_catch_where_the_correct_code_also_fails_is_noise():
    def row(name, kind, verdicts):
        result = {"tool": "gradcheck", "setting": "same_cases", "dtype": "float64", "verdicts": verdicts,
                  "cases": len(verdicts), "failing": verdicts.count("f"), "raised": verdicts.count("e"),
                  "flagged": "f" in verdicts or "e" in verdicts, "seconds": 0.0,
                  "flagged_families": [f for f, v in zip("abc", verdicts) if v in "fe"]}
        return {"name": name, "op": "maxpool2d", "kind": kind, "edge_only": True, "tensor": "dx",
                "shows_when": "ties", "results": [result]}
    rows = [row("bug_noise", "mutant", "pfp"), row("bug_clean", "mutant", "pff"), row("ok", "correct", "pfp")]
    summary = baselines.summarise(rows, seed=0, dtypes=("float64",), tools=("gradcheck",),
                                  selection={"members": None, "ops": None, "correct": []}, seconds=0.0)
    (table,) = summary["summary"]
    assert (table["mutants_caught"], table["mutants_caught_cleanly"], table["false_alarms"]) == (2, 1, 1)
    assert table["not_cleanly"] == ["bug_noise"]
    assert summary["not_caught_cleanly_by_gradcheck_or_check_grads"] == ["bug_noise"]
    assert "noise (1/3)" in baselines.markdown(summary)
