"""The op protocol ``bpcheck-op/1``: the Node.js example passes every op it declares, a slip in a copy
of a correct program is named, every way a program can misbehave is a clean verdict against it (never
a crash or a hang of bpcheck), what a program declines is not judged, and ``bpcheck op --exec`` end to
end with its repro script. The misbehaving programs are tests/hostile/op_*.py."""
import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bpcheck import ops
from bpcheck.ops.cases import cases
from bpcheck.opcheck.check import check_op
from bpcheck.opcheck.protocol import PROTOCOL, program
from tests.helpers.processes import children_running

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "hostile"
LAYERS_JS = REPO / "examples" / "layers.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
BPCHECK = Path(sys.executable).with_name("bpcheck")

JS_OPS = ("layernorm", "rmsnorm", "affine", "cross_entropy", "softmax_loss")
# layernorm on two families only: enough cases to see a program fail, restart and go on, few enough
# that a program that times out on every case costs seconds
SMALL = dataclasses.replace(ops.get("layernorm"), families=("plain", "uniform_cotangent"))


def hostile(name, *args):
    return [sys.executable, str(HOSTILE / f"{name}.py"), *args]


@pytest.fixture
def prog():
    """``program`` whose programs are closed after the test (a program that behaves would otherwise
    run, waiting on its stdin, until this process exits)."""
    made = []

    def make(argv, **options):
        candidate = program([str(a) for a in argv], **options)
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        candidate.close()


def running(fragment):
    """Live children of this process whose command line holds ``fragment``."""
    return children_running(fragment)


def first_bug(report):
    return next(r for r in report.first["rows"] if r["status"] == "bug")


# ---- the Node.js example ----------------------------------------------------------------------

@needs_node
def test_node_example_declares_exactly_what_it_implements():
    run = subprocess.run([NODE, str(LAYERS_JS)], input="", capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1, "stdout carries the hello line and nothing else"
    hello = json.loads(lines[0])
    assert hello["protocol"] == PROTOCOL
    assert sorted(hello["ops"]) == sorted(JS_OPS) and sorted(hello["dtypes"]) == ["float32", "float64"]
    assert hello.get("encoding", "decimal") == "decimal"


@needs_node
def test_node_example_answers_an_op_it_lacks_with_unsupported():
    request = {"id": "1", "op": "conv2d", "dtype": "float64", "hyper": {}, "inputs": {}, "constants": {},
               "cotangent": {"dtype": "float64", "shape": [], "data": [1.0]}}
    run = subprocess.run([NODE, str(LAYERS_JS)], input=json.dumps(request) + "\n", capture_output=True,
                         text=True, timeout=30)
    hello, reply = (json.loads(line) for line in run.stdout.splitlines())
    assert reply == {"id": "1", "error": {"kind": "unsupported", "message": "op conv2d"}}


@needs_node
@pytest.mark.parametrize("op", JS_OPS)
def test_node_example_passes(prog, op):
    report = check_op(op, candidate=prog([NODE, LAYERS_JS]), per_family=2)
    assert report.verdict == "pass", report.summary()
    assert all(report.coverage.values()) and not report.notes, report.summary()


@needs_node
@pytest.mark.parametrize("op", JS_OPS)
def test_node_example_computes_float32_in_float32(prog, op):
    """Every float32 reply is float32 values: the emulation rounds each result, it does not reply in double."""
    record, candidate = ops.get(op), prog([NODE, LAYERS_JS])
    for case in cases(record, ("float32",), 1, 0):
        result = candidate.run(record, case)
        for tensor in [result["out"], *result["grads"].values()]:
            assert np.array_equal(tensor, tensor.astype(np.float32).astype(np.float64)), case.describe()


# ---- a slip in a copy of a correct program ----------------------------------------------------

def test_the_reference_over_the_protocol_passes(prog):
    report = check_op("layernorm", candidate=prog(hostile("op_reference")), per_family=2)
    assert report.verdict == "pass", report.summary()


def test_a_scaled_dgamma_fails_with_dgamma_first(prog):
    report = check_op("layernorm", candidate=prog(hostile("op_scaled_dgamma")), per_family=2)
    assert report.verdict == "fail", report.summary()
    row = first_bug(report)
    assert row["tensor"] == "dgamma", report.summary()
    assert abs(row["scale"] - 1.001) < 1e-4, report.summary()
    assert {r["tensor"] for r in report.first["rows"] if r["status"] == "bug"} == {"dgamma"}


# ---- misbehaviour: a verdict against the program, bpcheck intact ------------------------------

@pytest.mark.parametrize("name, options, message", [
    ("op_garbage", {}, r"the reply is not JSON: 'computing gradients\.\.\.'"),
    ("op_wrong_id", {}, r"a reply for another request \(expected id '\d+'\): .*case-that-never-was"),
    ("op_no_grads", {}, r"a malformed reply \('grads'\)"),
])
def test_misbehaviour_is_a_failure_of_the_program(prog, name, options, message):
    start = time.monotonic()
    report = check_op(SMALL, candidate=prog(hostile(name), **options), dtypes=("float64",), per_family=1,
                      shrink=False)
    assert time.monotonic() - start < 15
    assert report.verdict == "fail" and report.failures == report.cases == 2, report.summary()
    row = report.first["rows"][0]
    assert row["tensor"] == "call" and row["status"] == "bug"
    assert row["message"].startswith(shlex.join(hostile(name)))
    assert re.search(message, row["message"]), row["message"]


@pytest.mark.parametrize("name, options, message", [
    ("op_no_hello", {"start_timeout": 2}, r"wrote no hello line within 2 s"),
    ("op_wrong_protocol", {}, r'the hello line is not valid .*got \'\{"protocol": "bpcheck/1"'),
    ("op_silent", {"timeout": 1}, r"no reply within 1 s, 2 times in a row: it hangs"),
])
def test_a_program_that_cannot_run_stops_the_run_once(prog, name, options, message):
    """No valid hello, or silence past the timeout twice in a row: one clear error, not a timeout a case."""
    start = time.monotonic()
    report = check_op(SMALL, candidate=prog(hostile(name), **options), dtypes=("float64",), per_family=4,
                      shrink=False)
    assert time.monotonic() - start < 15
    assert report.verdict == "error" and report.first is None, report.summary()
    assert re.search(message, report.error), report.error
    assert not running(f"{name}.py"), "a program that hangs is killed"


def test_a_program_that_exits_mid_run_fails_that_case_and_is_restarted(prog):
    report = check_op(SMALL, candidate=prog(hostile("op_exits")), dtypes=("float64",), per_family=2,
                      shrink=False)
    assert report.verdict == "fail" and report.cases == 4, report.summary()
    assert report.failures == 1, "cases 1, 2 and (restarted) 4 are answered right"
    message = report.first["rows"][0]["message"]
    assert "exited with status 3 instead of replying" in message and "out of memory (simulated)" in message


# ---- declined, not judged ---------------------------------------------------------------------

def test_an_op_the_hello_leaves_out_is_declined(prog):
    report = check_op("rmsnorm", candidate=prog(hostile("op_reference")), per_family=1)
    assert report.verdict == "none" and report.cases == report.failures == 0, report.summary()
    assert report.notes == {"unsupported": 2 * len(ops.get("rmsnorm").families)}


def test_a_dtype_the_hello_leaves_out_is_declined(prog):
    report = check_op(SMALL, candidate=prog(hostile("op_reference", "float64")), per_family=1)
    assert report.verdict == "pass" and report.cases == 2 and report.notes == {"unsupported": 2}
    assert {d for (_, d), n in report.coverage.items() if n} == {"float64"}


def test_an_unsupported_reply_is_declined(prog):
    report = check_op(SMALL, candidate=prog(hostile("op_unsupported")), per_family=1)
    assert report.verdict == "none" and report.failures == 0 and report.notes == {"unsupported": 4}


def test_a_failed_reply_is_a_failure_naming_its_message(prog):
    report = check_op(SMALL, candidate=prog(hostile("op_failed")), per_family=1, shrink=False)
    assert report.verdict == "fail" and report.failures == 4, report.summary()
    assert report.first["rows"][0]["message"].endswith("failed: boom")


# ---- the command line -------------------------------------------------------------------------

def bpcheck(*args, cwd):
    return subprocess.run([str(BPCHECK), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@needs_node
def test_cli_passes_the_node_example(tmp_path):
    run = bpcheck("op", "layernorm", "--exec", shlex.join([NODE, str(LAYERS_JS)]), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout and not list(tmp_path.iterdir())


def test_cli_fails_the_slip_and_its_repro_script_fails_too(tmp_path):
    run = bpcheck("op", "layernorm", "--exec", shlex.join(hostile("op_scaled_dgamma")), cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "dgamma: wrong" in run.stdout
    script = tmp_path / "bpcheck-op-layernorm.py"
    assert script.is_file() and (tmp_path / "bpcheck-op-layernorm.json").is_file()
    repro = subprocess.run([sys.executable, script.name], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert repro.returncode == 1, repro.stdout + repro.stderr
    assert "dgamma: wrong" in repro.stdout


def test_cli_says_nothing_was_judged_when_every_case_is_declined(tmp_path):
    run = bpcheck("op", "rmsnorm", "--exec", shlex.join(hostile("op_reference")), "--per-family", "1", cwd=tmp_path)
    assert run.returncode == 2 and "nothing was judged" in run.stderr, run.stdout + run.stderr
