"""Tests of the run and the report: generation covers the grid and is reproducible,
records stream to cases.jsonl and survive a crash, a broken candidate is a record
and not a crash, report.json follows its schema, and the page escapes whatever it
shows."""
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from bpcheck.cases.generate import generate_cases
from bpcheck.cli.report import report_command
from bpcheck.core.records import case_from_json, case_to_json
from bpcheck.core.spec import LAST_ACTIVATION, schema, validate_case
from bpcheck.run.backends import PythonBackend
from bpcheck.run.pool import Candidate, run_cases
from reference.network import backprop as reference_backprop
from tests.helpers.report import SMALL, build_report, hostile_records, make_record, make_row
from tests.helpers.report import small_run  # noqa: F401  (a fixture)


def strict_json(text):
    """json.loads that refuses NaN and Infinity (not JSON, though Python writes them)."""
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=reject)


def record_validator():
    s = schema("report.schema.json")
    return jsonschema.Draft202012Validator({**s["$defs"]["record"], "$defs": s["$defs"]})


# ---- generation --------------------------------------------------------------

def test_generate_covers_the_grid_every_depth_and_every_edge_family():
    from bpcheck.cases.generate import Support, edge_grid
    from bpcheck.cases.strategies import EDGE_FAMILIES
    cases = generate_cases(3, 3, losses=["mse", "binary_cross_entropy"],
                           activations=["relu", "gelu", "identity"])
    plain = [c for c in cases if c.meta["family"] == "plain"]
    edge = [c for c in cases if c.meta["family"] != "plain"]
    cells = Support().cells(["mse", "binary_cross_entropy"], ["relu", "gelu", "identity"])
    # per dtype: the three activations with mse (hidden and output), one more for BCE's fixed sigmoid
    assert len(edge_grid(cells, ["relu", "gelu", "identity"])) == 2 * (3 + 1)
    # one round of the grid: the 40% floor asks for 24 edge cases, fewer than one round's 80
    assert len(plain) == 2 * 3 * 2 * 3 and len(edge) == len(EDGE_FAMILIES) * 8
    more = generate_cases(3, 3, losses=["mse", "binary_cross_entropy"], activations=["relu", "gelu", "identity"],
                          edge_share=0.9)      # 9 x 36 = 324 wanted: five rounds
    assert sum(c.meta["family"] != "plain" for c in more) == 5 * len(EDGE_FAMILIES) * 8
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"c\d{4}-[a-z_]+-[a-z_]+-float(32|64)", c.id) for c in plain)
    assert all(re.fullmatch(rf"e\d{{4}}-{c.meta['family']}-[a-z_]+-[a-z_]+-float(32|64)", c.id) for c in edge)
    assert len({(c.meta["cell"]["loss"], c.meta["cell"]["activation"], c.meta["cell"]["dtype"]) for c in plain}) == 12
    assert {(c.meta["family"], c.meta["cell"]["loss"], c.meta["cell"]["dtype"]) for c in edge} == {
        (f, l, d) for f in EDGE_FAMILIES for l in ("mse", "binary_cross_entropy") for d in ("float32", "float64")}
    for c in cases:
        validate_case(c)
        loss, act, dtype = c.meta["cell"].values()
        assert c.id.endswith(f"-{loss}-{act}-{dtype}") and c.spec["loss"] == loss and c.spec["dtype"] == dtype
        assert act in [layer["activation"] for layer in c.spec["layers"]], c.spec
        if loss in LAST_ACTIVATION:
            assert c.spec["layers"][-1]["activation"] == LAST_ACTIVATION[loss]
        elif c in edge:
            assert c.spec["layers"][0]["activation"] == c.spec["layers"][-1]["activation"] == act
    assert {len(c.spec["layers"]) for c in plain} == {1, 2, 3, 4, 5, 6}
    assert all(len(c.spec["layers"]) >= 2 for c in edge)
    assert not any(all(not np.any(v) for v in c.params.values()) for c in cases), "all-zero example kept"
    assert all(np.any(c.x) for c in cases if c.meta["family"] != "zero_x"), "x all zero outside zero_x"
    assert all(not np.any(c.x) for c in cases if c.meta["family"] == "zero_x")


def test_every_loss_gets_edge_cases_in_a_short_one_dtype_run():
    """A float64-only run still meets every loss in every edge family (the last loss,
    softmax_cross_entropy, once got none), and every activation at a hidden and the output layer."""
    from bpcheck.cases.strategies import EDGE_FAMILIES
    from bpcheck.core.spec import ACTIVATIONS, LOSSES
    edge = [c for c in generate_cases(5, 1, dtypes=["float64"]) if c.meta["family"] != "plain"]
    assert len(edge) == len(EDGE_FAMILIES) * (len(ACTIVATIONS) + 3)
    assert {(c.meta["family"], c.meta["cell"]["loss"]) for c in edge} == {(f, l) for f in EDGE_FAMILIES
                                                                          for l in LOSSES}
    assert {(c.meta["family"], c.spec["layers"][-1]["activation"]) for c in edge
            if c.spec["loss"] not in LAST_ACTIVATION} == {(f, a) for f in EDGE_FAMILIES for a in ACTIVATIONS}


def test_exp_overflow_softmax_cases_put_a_row_far_below_the_batch_max():
    """A softmax shifted by the batch-wide max instead of each row's shows only where one row's
    largest logit lies far below another's: the family places the rows' maxima past the point where
    e^-d underflows to 0 (a default run once drew no such case, and one drew a spread of only 96.6 in
    float32, and missed that bug)."""
    from bpcheck.cases.strategies import SOFTMAX_SPAN, NumpyDraws, draw_case, draw_spec
    from reference.network import forward
    for seed in range(20):
        d = NumpyDraws(np.random.default_rng(seed))
        spec = draw_spec(d, "exp_overflow", losses=["softmax_cross_entropy"])
        case = draw_case(d, spec, "exp_overflow", batch=d.integer(2, 8))
        params = {k: v.astype(np.float64) for k, v in case.params.items()}
        logits = forward(spec, params, case.x.astype(np.float64))[0][-1]
        row_max = np.max(logits, axis=1)
        lo, hi = SOFTMAX_SPAN[spec["dtype"]]
        if np.ptp(row_max) > 1:
            assert lo * 0.99 <= np.ptp(row_max) <= hi * 1.01, (seed, row_max)
            assert lo * 0.99 <= np.max(logits) <= hi * 1.01 + 1


def _digest(cases):
    h = hashlib.sha256()
    for c in cases:
        h.update(json.dumps(case_to_json(c), sort_keys=True).encode())
    return h.hexdigest()


def test_generate_is_deterministic_and_seed_dependent():
    a = generate_cases(11, 2, **SMALL)
    b = generate_cases(11, 2, **SMALL)
    c = generate_cases(12, 2, **SMALL)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_generate_does_not_depend_on_what_was_imported():
    """Hypothesis draws literals from loaded project modules; generation must not."""
    code = ("import sys, json, hashlib\n{imports}\nfrom bpcheck.cases.generate import generate_cases\n"
            "from bpcheck.core.records import case_to_json\n"
            "cs = generate_cases(5, 2, losses=['mse'], activations=['tanh', 'relu'])\n"
            "h = hashlib.sha256()\n"
            "[h.update(json.dumps(case_to_json(c), sort_keys=True).encode()) for c in cs]\n"
            "print(h.hexdigest())\n")
    digests = set()
    for imports in ("", "import bpcheck.report.report, bpcheck.judge.judge, oracles.numeric, reference.network, "
                        "tests.test_compare, hypothesis"):
        proc = subprocess.run([sys.executable, "-c", code.format(imports=imports)], capture_output=True,
                              text=True, cwd=Path(__file__).parents[1], timeout=300)
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


def test_generate_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown"):
        generate_cases(0, 1, losses=["hinge"])


def test_case_json_round_trip_is_exact(small_run):
    for case in small_run[0]:
        back = case_from_json(json.loads(json.dumps(case_to_json(case))))
        for name in case.params:
            assert back.params[name].dtype == case.params[name].dtype
            assert back.params[name].tobytes() == case.params[name].tobytes()
        assert back.x.tobytes() == case.x.tobytes() and back.y.tobytes() == case.y.tobytes()
        assert back.y.dtype == case.y.dtype and back.spec == case.spec and back.id == case.id


# ---- running -----------------------------------------------------------------

def test_records_stream_to_jsonl_and_validate(small_run):
    cases, records, out = small_run
    lines = (out / "cases.jsonl").read_text().splitlines()
    assert [strict_json(line)["case"] for line in lines] == [c.id for c in cases]
    assert [r["case"] for r in records] == [c.id for c in cases]
    validator = record_validator()
    for line in lines:
        validator.validate(strict_json(line))
    for r in records:
        assert r["status"] == "ok", r["message"]
        assert {row["who"] for row in r["rows"]} == {"reference"}
        assert {row["who"] for row in r["oracle_rows"]} == {"torch", "jax"}
        assert r["seconds"] > 0


def _raises(spec, params, x, y):
    raise ZeroDivisionError("oops")


def _declines(spec, params, x, y):
    raise NotImplementedError("no softmax here")


def _garbage(spec, params, x, y):
    return "a string"


def _nan_grads(spec, params, x, y):
    out = reference_backprop(spec, params, x, y)
    out["grads"]["layers.0.W"] = np.full_like(out["grads"]["layers.0.W"], np.nan)
    out["grads"]["layers.0.b"] = np.full_like(out["grads"]["layers.0.b"], np.inf)
    return out


@pytest.mark.parametrize("fn, status", [(_raises, "error"), (_declines, "unsupported"),
                                        (_garbage, "error"), (_nan_grads, "ok")])
def test_a_broken_candidate_is_a_record_not_a_crash(small_run, tmp_path, fn, status):
    cases = small_run[0][:2]
    records = run_cases(cases, Candidate(fn.__name__), out_dir=tmp_path, progress=False,
                        backend=PythonBackend(fn, fn.__name__))
    assert [r["status"] for r in records] == [status, status]
    validator = record_validator()
    for line in (tmp_path / "cases.jsonl").read_text().splitlines():
        validator.validate(strict_json(line))
    if status != "ok":
        assert all(r["stage"] == "candidate" and r["message"] for r in records)
        return
    row = next(r for r in records[0]["rows"] if r["layer"] == 0 and r["tensor"] == "W")
    assert row["err_u"] == float("inf") and row["class"] == "bug"
    assert '"err_u":"inf"' in (tmp_path / "cases.jsonl").read_text()


def test_a_truth_or_harness_failure_is_a_record_with_its_stage(small_run, tmp_path, monkeypatch):
    import bpcheck.run.engine

    def truth_fails(case, spec=None):
        raise ArithmeticError("the arbiter could not certify 2048 bits")
    monkeypatch.setattr(bpcheck.run.engine, "exact", truth_fails)
    (record,) = run_cases(small_run[0][:1], "reference", out_dir=tmp_path, progress=False)
    assert (record["status"], record["stage"]) == ("error", "harness") and "truth" in record["message"]
    assert "could not certify" in record["message"]
    monkeypatch.undo()

    def judge_breaks(*args, **kwargs):
        raise KeyError("layers.9")
    monkeypatch.setattr(bpcheck.run.engine, "judge", judge_breaks)
    (record,) = run_cases(small_run[0][:1], "reference", out_dir=tmp_path, progress=False)
    assert (record["status"], record["stage"]) == ("error", "harness")
    assert "KeyError" in record["message"]
    record_validator().validate(strict_json((tmp_path / "cases.jsonl").read_text()))


class Counting:
    def __init__(self):
        self.name, self.calls = "reference", []

    def run(self, case):
        self.calls.append(case.id)
        return PythonBackend(reference_backprop, "reference").run(case)


def test_resume_skips_done_cases_and_repairs_a_truncated_line(small_run, tmp_path):
    cases, records, out = small_run
    lines = (out / "cases.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "cases.jsonl").write_text("".join(lines[:3]) + lines[3][:40])  # killed mid-write
    counting = Counting()
    resumed = run_cases(cases, "reference", out_dir=tmp_path, resume=True, progress=False, backend=counting,
                        oracles=("torch", "jax"))
    called = [c for c in dict.fromkeys(counting.calls) if not c.endswith("-B")]   # (the state check: A, B, A)
    assert called == [c.id for c in cases[3:]]
    assert [r["case"] for r in resumed] == [c.id for c in cases]
    again = [strict_json(line)["case"] for line in (tmp_path / "cases.jsonl").read_text().splitlines()]
    assert again == [c.id for c in cases]
    assert resumed[0] == records[0]


def test_resume_refuses_another_runs_file(small_run, tmp_path):
    cases, _, out = small_run
    line = strict_json((out / "cases.jsonl").read_text().splitlines()[0])
    line["spec"] = {**line["spec"], "input_dim": line["spec"]["input_dim"] + 1}
    (tmp_path / "cases.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="another run"):
        run_cases(cases, "reference", out_dir=tmp_path, resume=True, progress=False)


def test_without_resume_the_file_starts_afresh(small_run, tmp_path):
    (tmp_path / "cases.jsonl").write_text('{"case": "old"}\n')
    run_cases(small_run[0][:1], "reference", out_dir=tmp_path, progress=False)
    assert "old" not in (tmp_path / "cases.jsonl").read_text()


def test_two_workers_give_the_same_records(small_run, tmp_path):
    cases, records, _ = small_run
    parallel = run_cases(cases, "reference", out_dir=tmp_path, jobs=2, progress=False, oracles=("torch", "jax"))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(parallel) == strip(records)


CRASHER = """
import os
from reference.network import backprop as reference

def backprop(spec, params, x, y):
    if spec["dtype"] == "float32":
        os._exit(3)  # as a segfault would: no exception, the process is gone
    return reference(spec, params, x, y)
"""


@pytest.mark.parametrize("isolate", [True, False])
def test_a_candidate_that_kills_its_process_costs_only_that_case(small_run, tmp_path, isolate):
    """Isolated (the default) the candidate's own process dies and restarts; in-process it takes its
    worker down, and the pool runs the cases in flight again one by one to name the one that did."""
    cases = small_run[0]
    (tmp_path / "crasher.py").write_text(CRASHER)
    records = run_cases(cases, Candidate(f"{tmp_path / 'crasher.py'}:backprop", isolate=isolate),
                        out_dir=tmp_path / "out", jobs=2, progress=False)
    assert [r["case"] for r in records] == [c.id for c in cases]
    for case, record in zip(cases, records):
        if case.spec["dtype"] == "float32":
            assert (record["status"], record["stage"]) == ("error", "candidate")
            assert ("exited with status 3" if isolate else "worker process died") in record["message"]
        else:
            assert record["status"] == "ok" and all(r["class"] == "pass" for r in record["rows"])


@pytest.mark.parametrize("broken", ["BrokenProcessPool", "OSError"])
def test_a_pool_that_breaks_between_two_submissions_loses_no_case(small_run, tmp_path, monkeypatch, broken):
    """A worker can die after one chunk is handed out and before the next: submit itself raises
    BrokenProcessPool then (seen once in CI), or OSError("handle is closed") where Python 3.11's
    executor spawns a replacement worker inside submit (seen in a fresh clone's test run). That
    chunk stays queued and runs in the next pool."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool
    error = BrokenProcessPool("a worker died") if broken == "BrokenProcessPool" else OSError("handle is closed")

    from bpcheck.run import pool as bpool
    cases, pools = small_run[0][:6], []

    class FakePool:
        def __init__(self, *args):
            self.calls = 0
            pools.append(self)

        def submit(self, fn, text):
            self.calls += 1
            if len(pools) == 1 and self.calls == 2:
                raise error
            done = Future()
            done.set_result([bpool.dumps(bpool._failed(bpool.case_from_json(doc), "fake", "ran"))
                             for doc in json.loads(text)])
            return done

        def shutdown(self, wait=True, cancel_futures=False):
            pass
    monkeypatch.setattr(bpool, "_start_pool", FakePool)
    records = bpool.run_cases(cases, Candidate("mine.py:backprop", isolate=False), out_dir=tmp_path, jobs=2,
                              chunk=1, progress=False)
    assert [r["case"] for r in records] == [c.id for c in cases] and len(pools) == 2
    assert all(r["message"] == "ran" for r in records)


def test_progress_prints_plain_lines_off_a_terminal(small_run, tmp_path, capsys):
    run_cases(small_run[0][:2], "reference", out_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"2/2 cases, [\d.]+ cases/s, 0 failing, 0 with notes only", err)


def test_progress_counts_failing_cases_apart_from_notes():
    """The progress line and the verdict count the same thing: a case fails on a bug or precision
    row, a finding or an error; a case with only notes (kink, convention, dtype_limit) does not."""
    import io

    from bpcheck.run.progress import Progress
    rows = lambda *classes: [{"class": c} for c in classes]    # noqa: E731
    bar = Progress(5, stream=io.StringIO())
    for record in ({"status": "ok", "rows": rows("pass", "bug")}, {"status": "error", "rows": []},
                   {"status": "ok", "rows": rows("pass"), "findings": [{"class": "bug"}]},
                   {"status": "ok", "rows": rows("pass", "dtype_limit", "kink")}, {"status": "ok", "rows": rows("pass")}):
        bar.advance(record)
    assert (bar.failing, bar.noted) == (3, 1)


# ---- the report --------------------------------------------------------------

def test_report_json_validates_against_its_schema(small_run, tmp_path):
    _, records, _ = small_run
    report = build_report(records, tmp_path)
    on_disk = strict_json((tmp_path / "report.json").read_text())
    assert on_disk == report
    jsonschema.Draft202012Validator(schema("report.schema.json")).validate(on_disk)
    assert report["counts"]["cases"] == len(records) == report["counts"]["ok"]
    assert report["whos"] == ["reference", "torch", "jax"] and report["oracle_whos"] == ["torch", "jax"]
    env = report["environment"]
    assert env["libraries"]["torch"] and env["libraries"]["jax"] and env["libraries"]["numpy"]
    assert env["threads"]["cpu_count"] >= 1 and report["meta"]["seed"] == 7
    assert report["tolerance"]["safety"]["value"] == 4.0 and report["tolerance"]["safety"]["reason"]
    summary = {(g["dtype"], g["who"]) for g in report["groups"]["summary"]}
    assert summary == {(d, w) for d in ("float32", "float64") for w in ("reference", "torch", "jax")}
    for entry in report["side_by_side"]:
        assert entry["torch_median_u"] is not None and entry["jax_median_u"] is not None


def test_report_schema_rejects_a_broken_report(small_run, tmp_path):
    report = build_report(small_run[1], tmp_path)
    validator = jsonschema.Draft202012Validator(schema("report.schema.json"))
    bad = json.loads(json.dumps(report))
    bad["groups"]["summary"][0]["median_u"] = "lots"
    assert not validator.is_valid(bad)
    del bad["groups"]["summary"][0]["median_u"]
    assert not validator.is_valid(bad)


def test_stats_by_hand(tmp_path):
    rows = [make_row(err, cls) for err, cls in [(1.0, "pass"), (2.0, "pass"), (3.0, "pass"), (100.0, "bug")]]
    report = build_report([make_record("c1", rows)], tmp_path)
    (g,) = [g for g in report["groups"]["summary"] if g["who"] == "mine"]
    assert (g["n"], g["median_u"], g["p99_u"], g["max_u"], g["failures"]) == (4, 2.0, 100.0, 100.0, 1)
    assert g["classes"]["bug"] == 1 and g["classes"]["pass"] == 3
    assert g["min_margin"] == pytest.approx(40.0 / 100.0) and g["median_sensitivity"] == pytest.approx(40 * 2**-24)
    (f,) = report["failures"]
    assert f["class"] == "bug" and f["margin"] < 1


def test_markdown_and_html_hold_the_tables_and_plots(small_run, tmp_path):
    build_report(small_run[1], tmp_path, extra_sections=[("Diagnosis", "Layer 1 is *wrong*.",
                                                          "<p>Layer 1 is <em>wrong</em>.</p>")])
    md = (tmp_path / "report.md").read_text()
    for title in ("## Summary", "### By loss", "### By layer", "### By network depth", "## float32",
                  "## float64", "reference ÷ torch", "reference ÷ jax", "## Diagnosis"):
        assert title in md
    assert re.search(r"\| float32 \| jax \| \d+ \|", md)
    page = (tmp_path / "index.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4  # a heatmap and the distributions per dtype
    for data in images:
        import base64
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<p>Layer 1 is <em>wrong</em>.</p>" in page
    assert page.index("Layer 1 is") < page.index('id="summary"')          # the diagnosis comes first
    assert "median error in u over layer × loss</h3>" in page and 'style="background:#' in page
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page


def test_every_string_on_the_page_is_escaped(tmp_path):
    report = build_report(hostile_records(), tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "<b>bold</b>" not in page
    md = (tmp_path / "report.md").read_text()
    assert "<script" not in md.lower() and "<img src=x" not in md and "<b>bold</b>" not in md
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page
    jsonschema.Draft202012Validator(schema("report.schema.json")).validate(report)


# ---- the command -------------------------------------------------------------

def test_report_command_end_to_end(tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(report_command, ["--examples", "1", "--losses", "mse", "--activations",
                                                 "tanh,relu", "--dtypes", "float32", "--jobs", "1",
                                                 "--seed", "3", "--out", str(out), "--no-progress", "--no-ops"])
    assert result.exit_code == 0, result.output
    for name in ("report.json", "report.md", "index.html", "cases.jsonl", "heatmap.png"):
        assert (out / name).stat().st_size > 0
    report = strict_json((out / "report.json").read_text())
    assert report["meta"]["flags"]["activations"] == ["tanh", "relu"] and report["meta"]["seed"] == 3
    # 2 plain; 2 per edge family: each activation at the first and the last layer (edge_grid)
    assert report["counts"]["cases"] == 2 + 2 * 10 and report["dtypes"] == ["float32"]
    again = CliRunner().invoke(report_command, ["--examples", "1", "--losses", "mse", "--activations",
                                                "tanh,relu", "--dtypes", "float32", "--jobs", "1", "--seed",
                                                "3", "--out", str(out), "--no-progress", "--resume", "--no-ops"])
    assert again.exit_code == 0, again.output
    assert len((out / "cases.jsonl").read_text().splitlines()) == 22


def test_report_command_rejects_unknown_names(tmp_path):
    result = CliRunner().invoke(report_command, ["--losses", "hinge", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown hinge" in result.output
