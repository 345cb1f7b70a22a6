"""The false-alarm campaign and the side-by-side with gradcheck and check_grads, in small: they run,
count what they should, and can fail (a buggy member passed off as correct is a false alarm)."""
import json
import shutil
from pathlib import Path

import pytest

from bpcheck.cases.generate import generate_cases
from bpcheck.proof import campaign
from bpcheck.proof.baselines import check_grads_verdict, compare_on_zoo, gradcheck_verdict
from bpcheck.proof.zoo import ZOO

ZOO_DIR = Path(ZOO)


def small_zoo(tmp_path, names):
    for name in names:
        shutil.copy(ZOO_DIR / f"{name}.py", tmp_path / f"{name}.py")
    return tmp_path


def test_campaign_on_correct_implementations_raises_no_false_alarm(tmp_path):
    (tmp_path / "zoo").mkdir()
    zoo = small_zoo(tmp_path / "zoo", ["ok_textbook", "ok_nielsen_loop"])
    summary = campaign.run(120, zoo=zoo, jobs=1, out=tmp_path / "out", progress=False)
    whos = {t["who"] for t in summary["table"]}
    assert whos == {"reference", "torch", "jax", "ok_textbook", "ok_nielsen_loop"}
    assert summary["total_false_alarms"] == 0, [t for t in summary["table"] if t["false_alarms"]]
    assert summary["harness_errors"] == 0
    assert summary["meta"]["cases"] >= 120 and sum(summary["families"].values()) == summary["meta"]["cases"]
    assert (tmp_path / "out" / "false_alarms.md").read_text().startswith("# bpcheck false-alarm campaign")
    lines = (tmp_path / "out" / "false_alarms.jsonl").read_text().splitlines()
    assert len(lines) == summary["meta"]["cases"] and all(json.loads(line)["who"] for line in lines)


def test_campaign_counts_a_buggy_member_passed_off_as_correct(tmp_path):
    (tmp_path / "zoo").mkdir()
    shutil.copy(ZOO_DIR / "bug_dw_mean.py", tmp_path / "zoo" / "ok_disguised.py")   # EXPECTED still says fail
    text = (tmp_path / "zoo" / "ok_disguised.py").read_text().replace('"verdict": "fail"', '"verdict": "pass"')
    (tmp_path / "zoo" / "ok_disguised.py").write_text(text)
    summary = campaign.run(30, zoo=tmp_path / "zoo", jobs=1, out=tmp_path / "out", progress=False)
    row = next(t for t in summary["table"] if t["who"] == "ok_disguised" and t["false_alarms"])
    assert row["alarm_cases"] and summary["total_false_alarms"] >= row["false_alarms"]
    assert list((tmp_path / "out" / "false_alarms").glob("*.json")), "the alarming cases are saved"


def test_a_case_bpcheck_itself_fails_on_is_counted_saved_and_fails_the_run(tmp_path, monkeypatch):
    import bpcheck.judge.bounds
    real = bpcheck.judge.bounds.running_bounds

    def fragile(case, truth, **kw):
        if case.id.startswith("e"):
            raise OverflowError("a bound overflowed")
        return real(case, truth, **kw)
    monkeypatch.setattr(bpcheck.judge.bounds, "running_bounds", fragile)
    (tmp_path / "zoo").mkdir()
    summary = campaign.run(30, zoo=tmp_path / "zoo", jobs=1, out=tmp_path / "out", progress=False)
    assert summary["harness_errors"] > 0 and summary["meta"]["cases"] >= 30, "the run went on"
    assert "OverflowError" in (tmp_path / "out" / "false_alarms.jsonl").read_text()
    assert list((tmp_path / "out" / "false_alarms").glob("e*.json"))
    assert "Harness errors: " in (tmp_path / "out" / "false_alarms.md").read_text()


@pytest.mark.parametrize("name, expected", [("ok_textbook", "pass"), ("bug_dw_mean", "fail")])
def test_gradcheck_and_check_grads_wrappers_see_a_wrong_gradient(name, expected):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ZOO_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    case = next(c.astype("float64") for c in generate_cases(1, 1, losses=["mse"], activations=["tanh"],
                                                              edge_share=0.0) if c.batch > 1)
    assert gradcheck_verdict(module.backprop, case) == expected
    assert check_grads_verdict(module.backprop, case) == expected


def test_baselines_table_is_written(tmp_path):
    zoo = small_zoo(tmp_path, ["ok_textbook", "bug_weight_decay"])
    summary = compare_on_zoo(1, zoo=zoo, out=tmp_path / "out", losses=["mse"], activations=["tanh", "relu"])
    assert {r["member"] for r in summary["members"]} == {"ok_textbook", "bug_weight_decay"}
    assert summary["cases"] >= 2 and all(len(v) == summary["cases"] for r in summary["members"]
                                         for v in r["verdicts"].values())
    text = (tmp_path / "out" / "baselines.md").read_text()
    assert "| mutants caught cleanly (of 1) | 1 |" in text and "| correct members flagged (of 1) | 0 |" in text


def test_a_tool_that_flags_everything_catches_nothing_cleanly():
    from bpcheck.proof.baselines import summarise
    cases = generate_cases(1, 1, losses=["mse"], activations=["tanh"], edge_share=0.0)[:2]
    rows = [{"member": "bug_x", "expected": "fail", "seconds": dict.fromkeys(("bpcheck", "gradcheck", "check_grads"), 0),
             "verdicts": {"bpcheck": "fp", "gradcheck": "ff", "check_grads": "pf"}},
            {"member": "ok_y", "expected": "pass", "seconds": dict.fromkeys(("bpcheck", "gradcheck", "check_grads"), 0),
             "verdicts": {"bpcheck": "pp", "gradcheck": "ff", "check_grads": "pp"}}]
    tools = summarise(rows, cases)["tools"]
    assert tools["gradcheck"]["mutants_flagged"] == 1 and tools["gradcheck"]["mutants_caught_cleanly"] == 0
    assert tools["gradcheck"]["correct_flagged"] == 1 and tools["bpcheck"]["mutants_caught_cleanly"] == 1
