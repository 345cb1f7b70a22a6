"""Targets that used to take bpcheck down or stall it, each run to a clear verdict.

- a target that hangs in the support probes costs one timeout and exit 2 (it used to cost one
  timeout per probe, about twenty);
- a failure found only in the contract (an extra gradient key, an overwritten input) has no layer
  to cut at: shrinking keeps the case whole instead of dying;
- ``OSError`` from ``submit`` on a breaking process pool is a dead pool, like BrokenProcessPool;
- an implementation that declines networks above a size is checked within that size (probed, or
  ``--max-params``), and the verdict says so.
"""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpcheck.cases.generate import Support, generate_cases
from bpcheck.cli.validate import run_validate, validate_command
from bpcheck.core.spec import n_params
from bpcheck.diagnose.search import cut_front, judge_case
from bpcheck.report.report import DEFAULT_SEED
from bpcheck.report.verdict import verdict_text
from bpcheck.run.backends import PythonBackend, load_function
from bpcheck.run.support import Hung, probe, probe_size

HOSTILE = Path(__file__).resolve().parent / "hostile"
CELL = dict(losses=["mse"], activations=["tanh"], dtypes=["float64"])


def target(name):
    return f"{HOSTILE / name}.py:backprop"


def records_of(out):
    return [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]


def main_thread_only():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGALRM timeouts work in the main thread only")


# ---- a hang in the probes: one timeout, then exit 2 ---------------------------------------------

def test_a_probe_that_hangs_ends_the_probing_at_once():
    main_thread_only()
    calls = []

    def hangs(spec, params, x, y):
        calls.append(spec)
        while True:
            time.sleep(0.01)
    with pytest.raises(Hung, match=r"no answer within the timeout of 0.2 s to a tiny probe case \(1 layer"):
        probe(PythonBackend(hangs, "hangs", timeout=0.2))
    assert len(calls) == 2          # the same probe retried once (a slow first call), not one per probe


def test_a_probe_that_raises_at_once_is_not_a_hang():
    def raises(spec, params, x, y):
        raise ValueError("broken")
    support = probe(PythonBackend(raises, "raises", timeout=5.0), **CELL)
    assert (support.losses, support.dtypes, support.declined) == (("mse",), ("float64",), {})


def test_a_first_probe_slowed_once_is_not_a_hang():
    """A library's lazy set-up (or a loaded machine) may make the very first call slow: one slow call
    is retried, and the probing goes on."""
    main_thread_only()
    calls = []

    def slow_once(spec, params, x, y):
        calls.append(spec)
        if len(calls) == 1:
            time.sleep(0.5)
        raise NotImplementedError("no")
    support = probe(PythonBackend(slow_once, "slow_once", timeout=0.2), **CELL)
    assert len(calls) > 2 and not support.losses


def test_validate_on_a_target_that_never_returns_exits_2_after_one_timeout(tmp_path):
    """Before: about twenty probes waited on one after another (each a timeout and a restart),
    over 100 s with --timeout 5 before the first case. The deadline is 4 timeouts and a generous
    start-up (imports and the candidate process on a loaded machine)."""
    timeout, startup = 5, 60
    run = subprocess.run([sys.executable, "-c", "from bpcheck.cli.cli import main; main()", "validate",
                          target("never_returns"), "--timeout", str(timeout), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=4 * timeout + startup, cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "gave no answer within the timeout of 5 s to a tiny probe case" in run.stdout
    assert "nothing was run: it hangs" in run.stdout and "verdict: ERROR (exit 2)" in run.stdout
    assert not pyworkers_of(str(HOSTILE / "never_returns.py")), "the hung candidate process outlived the run"


def pyworkers_of(fragment):
    """Live ``bpcheck.run.pyworker`` processes whose command line holds ``fragment``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "bpcheck.run.pyworker" in cmdline and fragment in cmdline and state != "Z":
            found.append(cmdline)
    return found


# ---- shrinking a failure that has no layer ------------------------------------------------------

@pytest.mark.parametrize("name, phrase", [
    ("extra_grad_key", "gradients for parameters that do not exist"),
    ("mutates_x", "overwrote its input x in place"),
])
def test_a_failure_found_only_in_the_contract_is_shrunk_not_a_crash(tmp_path, name, phrase):
    verdict = run_validate(target(name), out_dir=tmp_path, progress=False, jobs=1, min_cases=6, edge_share=0.0,
                           max_depth=3, shrink_budget=10.0, **CELL)
    assert verdict["exit_code"] == 1 and not verdict["errors"], verdict
    assert verdict["shrunk"], verdict
    assert phrase in (tmp_path / "report.md").read_text()


def test_cut_front_keeps_a_case_whose_only_failure_is_a_finding():
    backend = PythonBackend(load_function(target("extra_grad_key")), "extra_grad_key")
    case = next(c for c in generate_cases(DEFAULT_SEED, 3, edge_share=0.0, max_depth=3, **CELL)
                if len(c.spec["layers"]) == 3)
    judged = judge_case(case, backend)
    assert judged.failures and all(r["class"] == "pass" for r in judged.rows), judged.rows
    assert cut_front(judged, backend) is judged


# ---- OSError from submit on a breaking pool -----------------------------------------------------

# ---- an implementation that declines big networks -----------------------------------------------

def test_probe_size_finds_the_largest_width_taken():
    backend = PythonBackend(load_function(target("small_nets_only")), "small")
    limit, why = probe_size(backend, Support(), max_depth=6)
    assert limit == 192                                  # 2 layers of 12 units on 2 inputs; 13 units: 221
    assert "declined a network of 221 parameters (2 layers of 13, 13 units" in why
    assert "takes at most 200" in why
    assert probe_size(backend, Support(), max_depth=1)[0] == 198      # 1 layer of 66 units; 67: 201
    correct = PythonBackend(load_function(str(HOSTILE / "_correct.py") + ":backprop"), "correct")
    assert probe_size(correct, Support(), max_depth=6) == (None, None)


def test_max_params_draws_only_networks_that_fit_and_continues_with_new_ids():
    grid = dict(losses=["mse", "softmax_cross_entropy"], activations=["tanh", "relu"], dtypes=["float64"],
                max_depth=6)
    assert max(n_params(c.spec) for c in generate_cases(3, 2, **grid)) > 100     # the limit bites
    first = generate_cases(3, 2, max_params=100, **grid)
    more = generate_cases(3, 2, max_params=100, start=2, **grid)
    assert first and more and all(n_params(c.spec) <= 100 for c in first + more)
    assert len({c.id for c in first + more}) == len(first + more)
    assert {len(c.spec["layers"]) for c in first} >= {1, 2, 3}


def test_an_implementation_that_declines_big_networks_is_checked_within_its_size(tmp_path):
    """Before: drawn as for any implementation; of 47 cases 28 declined, 19 checked: exit 2, 'too
    little checked' (28 cells, one case each, and the top-up had no room for a second round)."""
    verdict = run_validate(target("small_nets_only"), out_dir=tmp_path, progress=False, jobs=1, shrink=False,
                           min_cases=20, activations=["tanh", "relu"])
    assert verdict["exit_code"] == 0 and verdict["checked"] >= 20 and verdict["skipped"] == 0, verdict
    limit = verdict["options"]["max_params"]
    assert limit == 192 and f"networks of more than {limit} parameters" in verdict["support"]["declined"]
    assert all(n_params(r["spec"]) <= limit for r in records_of(tmp_path))
    assert f"left out of the draw): networks of more than {limit} parameters" in verdict_text(verdict)


def test_max_params_limits_the_draw_of_an_implementation_that_takes_everything(tmp_path):
    verdict = run_validate(target("_correct"), out_dir=tmp_path, progress=False, jobs=1, shrink=False,
                           min_cases=20, max_params=40, **CELL)
    assert verdict["exit_code"] == 0 and verdict["checked"] >= 20, verdict
    assert verdict["options"]["max_params"] == 40 and not verdict["support"]["declined"]
    sizes = [n_params(r["spec"]) for r in records_of(tmp_path)]
    assert max(sizes) <= 40 and len(sizes) == verdict["cases"]


def test_max_params_is_a_positive_integer_option():
    result = CliRunner().invoke(validate_command, [target("_correct"), "--max-params", "0"])
    assert result.exit_code == 2 and "--max-params" in result.output
    assert "--max-params" in CliRunner().invoke(validate_command, ["--help"]).output


def test_n_params_counts_every_weight_and_bias():
    spec = {"input_dim": 3, "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "identity"}],
            "loss": "mse", "dtype": "float64"}
    assert n_params(spec) == 4 * 3 + 4 + 2 * 4 + 2
