"""Code that hangs, crashes, exits, mutates its inputs or lies never takes bpcheck down or slips
through, and no result is lost.

Each target in ``tests/hostile/`` is a correct implementation (``examples/numpy_mlp.py``) that
misbehaves in one way, most of them only on the *picked* calls: networks of exactly three layers
(``tests/hostile/_correct.py``). The grid below cycles depths 1, 2, 3, so the third case of a run
(c0002) is the first bad one: two cases are judged before it and more after it. For every
target the tests check the verdict (exit 0, 1 or 2 as README.md says), a recognisable phrase of
the message, and ``cases.jsonl``: one record per case, the picked ones errors, every other one
judged -- a crash, exit or hang costs that case only, the candidate process is restarted.
"""
import importlib.util
import json
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from bpcheck.cases.generate import generate_cases
from bpcheck.cli.validate import run_validate
from bpcheck.report.report import DEFAULT_SEED
from bpcheck.run.backends import AdapterError, PythonBackend, load_function
from bpcheck.run.protocol import isolated_python
from tests.helpers.processes import children_running

HOSTILE = Path(__file__).resolve().parent / "hostile"
# One loss x activation x dtype cell, depths cycling 1, 2, 3: c0000 (1 layer), c0001 (2), c0002 (3), ...
CELL = dict(losses=["mse"], activations=["tanh"], dtypes=["float64"], max_depth=3)
# plain cases only; the timeout is for the hang tests, which set their own: elsewhere it must never fire,
# even on a loaded machine (filling 600 MB to a MemoryError took over 5 s under a parallel run)
GRID = dict(CELL, min_cases=6, jobs=1, shrink=False, timeout=60.0, edge_share=0.0)

_spec = importlib.util.spec_from_file_location("hostile_correct_for_tests", HOSTILE / "_correct.py")
_correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_correct)
picked = _correct.picked


def target(name):
    return f"{HOSTILE / name}.py:backprop"


def validate(name, tmp_path, **options):
    """Run ``bpcheck validate`` on a hostile target; (verdict, records of cases.jsonl by case id)."""
    out = tmp_path / "out"
    verdict = run_validate(target(name), out_dir=out, progress=False, **{**GRID, **options})
    return verdict, read_records(out)


def read_records(out):
    lines = (out / "cases.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    ids = [r["case"] for r in records]
    assert len(set(ids)) == len(ids), f"a case was recorded twice: {ids}"
    return dict(sorted((r["case"], r) for r in records))


def failing(record):
    """The failing rows and findings of a record (class bug or precision)."""
    return [item for item in record["rows"] + record["findings"] if item["class"] in ("bug", "precision")]


def assert_all_there(verdict, records):
    """No result lost: one record per case drawn, ids c0000.. in order, and the reports written."""
    assert verdict["cases"] == len(records), (verdict["cases"], list(records))
    assert list(records) == sorted(records) and all(i.startswith(f"c{n:04d}-") for n, i in enumerate(records))
    for name in ("report.json", "report.md", "index.html"):
        assert Path(verdict["reports"][name]).is_file()


def assert_only_picked_are_errors(verdict, records, phrase):
    """Exit 2; every picked case an error naming ``phrase``; every other one judged and passing;
    and the first bad case has judged cases both before and after it."""
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 2, verdict
    order = list(records)
    bad = [i for i in order if picked(records[i]["spec"])]
    assert bad and 0 < order.index(bad[0]) < len(order) - 1, f"the grid no longer puts a picked case mid-run: {order}"
    for case_id, record in records.items():
        if case_id in bad:
            assert record["status"] == "error" and record["stage"] == "candidate", record
            assert re.search(phrase, record["message"]), record["message"]
        else:
            assert record["status"] == "ok", record["message"]
            assert not failing(record), failing(record)
    assert [e["case"] for e in verdict["errors"]] == bad
    assert verdict["checked"] == len(order) - len(bad) and verdict["failed"] == 0


def assert_picked_fail_as_bugs(verdict, records, check):
    """Exit 1, no adapter error; the picked cases fail (``check(record)`` holds), the rest pass."""
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 1 and not verdict["errors"], verdict
    bad = [i for i, r in records.items() if picked(r["spec"])]
    assert bad and verdict["failed_cases"] == bad, verdict["failed_cases"]
    for case_id, record in records.items():
        assert record["status"] == "ok", record["message"]
        if case_id in bad:
            assert failing(record) and all(item["class"] == "bug" for item in failing(record))
            check(record)
        else:
            assert not failing(record), failing(record)


def pyworkers_running(fragment):
    """Live ``bpcheck.run.pyworker`` children of this process whose command line holds ``fragment``."""
    return children_running("bpcheck.run.pyworker", fragment)


# ---- a call that raises, crashes, exits, hangs or returns garbage: that case only --------------

@pytest.mark.parametrize("name, phrase, options", [
    ("exits", r"the program exited with status 3 before replying", {}),
    ("segfaults", r"the program was killed by signal 11 before replying", {}),
    ("recursion_crash", r"the program was killed by signal (11|6) before replying", {}),
    ("recurses", r"raised RecursionError: maximum recursion depth exceeded", {}),
    ("leaks_memory", r"raised MemoryError", {"memory_mb": 600}),
    ("exits_via_sys_exit", r"raised SystemExit: 0", {}),
    ("raises", r"raised ValueError: matrix shapes do not line up in layer 2 \(at raises\.py:\d+\)", {}),
    ("raises_control_chars", r"raised ValueError: .*layer 2 failed", {}),
    ("returns_none", r"returned NoneType, expected a dict with 'loss' and 'grads'", {}),
    ("returns_string", r"returned str, expected a dict with 'loss' and 'grads'", {}),
    ("no_grads", r"result has no 'grads' \(keys: \['gradients', 'loss'\]\)", {}),
])
def test_a_broken_call_is_an_error_for_that_case_only(tmp_path, name, phrase, options):
    verdict, records = validate(name, tmp_path, **options)
    assert_only_picked_are_errors(verdict, records, phrase)


def test_a_call_that_never_returns_is_killed_at_the_timeout_and_the_run_goes_on(tmp_path):
    start = time.monotonic()
    verdict, records = validate("loops_forever", tmp_path, timeout=1.0)
    assert_only_picked_are_errors(
        verdict, records, r"no reply within the timeout of 1 s; the program was killed and will be restarted")
    assert time.monotonic() - start < 30
    assert not pyworkers_running("loops_forever.py"), "a hung candidate process outlived the run"


def test_a_call_that_sleeps_past_the_timeout_once_costs_that_case_only(tmp_path):
    # ~11 probe calls, then the cases (the first one twice): the 50th call falls mid-run.
    verdict, records = validate("sleeps_on_50th_call", tmp_path, timeout=1.0, min_cases=45)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 2 and len(verdict["errors"]) == 1, verdict["errors"]
    errors = [i for i, r in records.items() if r["status"] != "ok"]
    assert len(errors) == 1
    (slow,) = errors
    assert "no reply within the timeout of 1 s" in records[slow]["message"]
    order = list(records)
    assert 0 < order.index(slow) < len(order) - 1, order          # judged cases before and after it
    assert all(not failing(r) for i, r in records.items() if i != slow)
    assert not pyworkers_running("sleeps_on_50th_call.py")


def test_a_flood_of_prints_on_stdout_corrupts_nothing(tmp_path):
    verdict, records = validate("floods_stdout", tmp_path)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 0 and verdict["checked"] == verdict["cases"] == 6, verdict
    assert all(r["status"] == "ok" and r["rows"] and not failing(r) for r in records.values())


# ---- wrong numbers and broken contracts: a discrepancy or a bug finding, exit 1 ------------------

def test_nan_gradients_are_a_bug_not_an_error(tmp_path):
    def check(record):
        rows = [r for r in failing(record) if (r["layer"], r["tensor"]) == (0, "W")]
        assert rows and rows[0]["err_u"] == "inf", rows
        assert all((r["layer"], r["tensor"]) == (0, "W") for r in failing(record))
    assert_picked_fail_as_bugs(*validate("nan_grads", tmp_path), check)


def test_an_infinite_loss_is_a_bug_not_an_error(tmp_path):
    def check(record):
        assert [(r["layer"], r["tensor"]) for r in failing(record)] == [(None, "loss")], failing(record)
    assert_picked_fail_as_bugs(*validate("inf_loss", tmp_path), check)


@pytest.mark.parametrize("name, overwritten", [("mutates_x", "x"), ("mutates_param", "params['layers.0.W']")])
def test_overwriting_an_input_in_place_is_a_bug_finding(tmp_path, name, overwritten):
    verdict, records = validate(name, tmp_path)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 1 and not verdict["errors"] and verdict["failed"] == verdict["cases"], verdict
    for record in records.values():
        assert record["status"] == "ok" and all(r["class"] != "bug" for r in record["rows"])   # right gradients
        (finding,) = record["findings"]
        assert finding["class"] == "bug" and finding["kind"] == "mutated_input"
        assert f"overwrote its input {overwritten} in place" in finding["message"]


def test_state_kept_across_calls_is_caught_by_calling_twice(tmp_path):
    verdict, records = validate("accumulates", tmp_path)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 1 and not verdict["errors"] and verdict["failed"] >= 1, verdict
    assert all(r["status"] == "ok" for r in records.values())
    messages = [f["message"] for case_id in verdict["failed_cases"] for f in records[case_id]["findings"]
                if f["class"] == "bug"]
    assert any("results differ between two identical calls" in m for m in messages), messages


def test_noise_on_every_call_fails_every_case_and_is_named_nondeterministic(tmp_path):
    verdict, records = validate("noisy", tmp_path)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 1 and not verdict["errors"] and verdict["failed"] == verdict["cases"], verdict
    for record in records.values():
        assert any(r["class"] == "bug" for r in record["rows"])
        assert any(f["kind"] == "nondeterministic" and "results differ between two identical calls" in f["message"]
                   for f in record["findings"]), record["findings"]


def test_a_gradient_for_a_parameter_that_does_not_exist_is_a_bug_naming_it(tmp_path):
    verdict, records = validate("extra_grad_key", tmp_path)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 1 and not verdict["errors"] and verdict["failed"] == verdict["cases"], verdict
    for record in records.values():
        assert not [r for r in record["rows"] if r["class"] != "pass"]
        (finding,) = record["findings"]
        assert finding["class"] == "bug" and "'layers.7.W'" in finding["message"], finding


def test_transposed_weight_gradients_are_a_bug_not_an_adapter_error(tmp_path):
    verdict, records = validate("transposed_w", tmp_path)
    assert_all_there(verdict, records)
    assert verdict["exit_code"] == 1 and not verdict["errors"] and verdict["failed"] == verdict["cases"], verdict
    notes = []
    for record in records.values():
        bad = failing(record)
        assert bad and {r["tensor"] for r in bad} == {"W"} and all(r["class"] == "bug" for r in bad)
        notes += [r.get("note") or "" for r in bad]
    assert any("(the transpose of the expected shape)" in n for n in notes), notes


def test_script_in_a_message_and_a_key_is_escaped_in_the_reports(tmp_path):
    verdict, records = validate("script_injection", tmp_path)
    script = "<script>alert(1)</script>"
    assert verdict["exit_code"] == 2                               # the raise wins over the finding
    assert any(script in e["message"] for e in verdict["errors"])  # kept as data, not dropped
    assert any(script in f["message"] for r in records.values() for f in r["findings"])
    markdown = Path(verdict["reports"]["report.md"]).read_text()
    html = Path(verdict["reports"]["index.html"]).read_text()
    for text in (markdown, html):
        assert "<script" not in text.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text     # shown, escaped


def test_an_undecodable_file_name_in_a_message_does_not_crash_the_report(tmp_path):
    verdict, records = validate("raises_undecodable", tmp_path)
    assert_only_picked_are_errors(verdict, records, r"raised ValueError: cannot load weights-caf")


def test_control_characters_in_a_message_are_not_written_raw_to_the_reports(tmp_path):
    verdict, _ = validate("raises_control_chars", tmp_path)
    assert verdict["exit_code"] == 2
    for name in ("report.md", "index.html"):
        text = Path(verdict["reports"][name]).read_text()
        assert "layer 2 failed" in text
        raw = sorted({c for c in text if ord(c) < 32 and c not in "\t\n\r"})
        assert not raw, f"{name} holds raw control characters {raw}"


# ---- a protocol program that stops half-way through a reply -------------------------------------

def exec_validate(mode, tmp_path, **options):
    out = tmp_path / "out"
    command = f"{sys.executable} {HOSTILE / 'half_line_program.py'} {mode}"
    verdict = run_validate(exec_command=command, out_dir=out, progress=False, **{**GRID, "timeout": 1.0, **options})
    return verdict, read_records(out)


def test_a_program_that_writes_half_a_line_and_hangs_is_killed_quoting_the_line(tmp_path):
    verdict, records = exec_validate("hang", tmp_path)
    assert_only_picked_are_errors(verdict, records, r"no reply within the timeout of 1 s; partial line "
                                                    r"'\{\"id\": \"c\d+-mse-tanh-float64\.\d+\", \"result\": ")


def test_a_program_that_exits_half_way_through_a_reply_costs_that_case_only(tmp_path):
    verdict, records = exec_validate("exit", tmp_path)
    assert_only_picked_are_errors(verdict, records, r"'\{\"id\": \"c\d+-mse-tanh-float64\.\d+\", \"result\": ")


def test_a_program_that_exits_half_way_through_a_reply_is_reported_as_an_exit(tmp_path):
    verdict, records = exec_validate("exit", tmp_path)
    errors = [r["message"] for r in records.values() if r["status"] == "error"]
    assert errors and verdict["exit_code"] == 2
    for message in errors:
        assert "exited with status 5" in message, message
        assert "giving up half-way through the reply" in message, message  # its stderr
        assert "'{\"id\": \"c" in message, message  # the torn line, quoted
        assert "log to stderr" not in message, message


# ---- in-process: the same verdicts where the behaviour allows it ---------------------------------

@pytest.mark.parametrize("name", ["raises", "mutates_x"])
def test_in_process_and_isolated_agree(tmp_path, name):
    isolated, isolated_records = validate(name, tmp_path / "isolated")
    here, here_records = validate(name, tmp_path / "here", in_process=True)
    assert isolated["options"]["isolated"] and not here["options"]["isolated"]
    assert here["exit_code"] == isolated["exit_code"] == (2 if name == "raises" else 1)
    assert list(here_records) == list(isolated_records)
    for case_id, record in here_records.items():
        other = isolated_records[case_id]
        assert record["status"] == other["status"], case_id
        assert [f["message"] for f in record["findings"]] == [f["message"] for f in other["findings"]]
        assert ([r["class"] for r in record["rows"]], record["stage"]) == ([r["class"] for r in other["rows"]],
                                                                            other["stage"])
        if record["status"] == "error":
            phrase = "raised ValueError: matrix shapes do not line up in layer 2"
            assert phrase in record["message"] and phrase in other["message"]
    if name == "raises":
        assert_only_picked_are_errors(here, here_records, "raised ValueError: matrix shapes do not line up")


class Runaway(BaseException):
    """A test ran away. Not an Exception: nothing in bpcheck catches it on its way out."""


@pytest.fixture
def cpu_guard():
    """A context manager stopping a runaway test after ``seconds`` of CPU time (SIGPROF, so that
    SIGALRM stays free for the timeout under test). Main thread only, like SIGALRM timeouts."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGALRM timeouts work in the main thread only")

    @contextmanager
    def guard(seconds):
        def ring(signum, frame):
            raise Runaway(f"still running after {seconds} s of CPU time: the hang was not stopped")
        previous = signal.signal(signal.SIGPROF, ring)
        signal.setitimer(signal.ITIMER_PROF, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)
    return guard


def grid_cases(n=3):
    """The first ``n`` cases of the grid: c0000 (1 layer), c0001 (2), c0002 (3, picked)."""
    return generate_cases(DEFAULT_SEED, n, edge_share=0.0, **CELL)


def test_in_process_timeout_stops_a_python_hang_with_sigalrm(cpu_guard):
    backend = PythonBackend(load_function(target("loops_forever")), "loops_forever", timeout=1.0)
    good, _, bad = grid_cases()
    assert picked(bad.spec) and not picked(good.spec)
    with cpu_guard(8):
        start = time.monotonic()
        with pytest.raises(AdapterError, match="no result within the timeout of 1 s"):
            backend.run(bad)
        assert time.monotonic() - start < 10
        assert backend.run(good)["grads"]                    # still usable: the alarm is disarmed
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_in_process_run_stops_a_python_hang_at_the_timeout(tmp_path, cpu_guard):
    with cpu_guard(8):              # fixed, the run takes ~2 s of CPU (two 1 s hangs)
        verdict, records = validate("loops_forever", tmp_path, in_process=True, timeout=1.0)
    assert_only_picked_are_errors(verdict, records, "no result within the timeout of 1 s")


def test_in_process_sys_exit_is_an_error_for_that_case_not_the_end_of_the_run(tmp_path):
    try:
        verdict, records = validate("exits_via_sys_exit", tmp_path, in_process=True)
    except SystemExit as exc:
        pytest.fail(f"SystemExit({exc.code!r}) raised by the target escaped run_validate")
    assert_only_picked_are_errors(verdict, records, "raised SystemExit: 0")


# ---- restarts, and worker processes ------------------------------------------------------------

@pytest.mark.parametrize("name, timeout, phrase", [
    ("exits", 5.0, "exited with status 3"),
    ("segfaults", 5.0, "killed by signal 11"),
    ("loops_forever", 1.0, "no reply within the timeout of 1 s"),
])
def test_the_candidate_process_is_restarted_after_a_crash_or_hang(name, timeout, phrase):
    good, _, bad = grid_cases()
    with isolated_python(target(name), timeout=timeout) as backend:
        assert backend.run(good)["grads"]
        first = backend._child.proc.pid
        with pytest.raises(AdapterError, match=phrase):
            backend.run(bad)
        assert backend._child is None and backend.restarts == 1
        assert backend.run(good)["grads"]                    # a fresh process answers
        assert backend._child.proc.pid != first


def test_two_jobs_lose_nothing_when_the_candidate_exits(tmp_path):
    verdict, records = validate("exits", tmp_path, jobs=2)
    assert verdict["options"]["jobs"] == 2
    assert_only_picked_are_errors(verdict, records, "the program exited with status 3 before replying")


def test_two_jobs_in_process_survive_a_worker_killed_by_a_segfault(tmp_path):
    verdict, records = validate("segfaults", tmp_path, jobs=2, in_process=True)
    assert_only_picked_are_errors(verdict, records, "the worker process died while running this case")
