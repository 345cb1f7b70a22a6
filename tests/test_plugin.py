"""The pytest plugin: ``--bpcheck-target`` runs bpcheck's property suite against another
implementation, from any directory, with the documented command (README / docs/validate.md):

    pytest /path/to/bpcheck/tests/test_properties.py -k candidate --bpcheck-target TARGET
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tests" / "test_properties.py"


def pytest_in(cwd, *args, k="candidate"):
    """The console script (not ``python -m pytest``, which would put the cwd on sys.path itself)."""
    return subprocess.run([str(Path(sys.executable).with_name("pytest")), str(SUITE), "-k", k,
                           "-p", "no:cacheprovider", "--bpcheck-examples", "4", "--hypothesis-seed", "1", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.fixture()
def elsewhere(tmp_path):
    """A directory outside the repository holding a user's implementations."""
    for name in ("numpy_mlp.py", "buggy_mlp.py"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    return tmp_path


def test_correct_target_passes_from_another_directory(elsewhere):
    run = pytest_in(elsewhere, "--bpcheck-target", "numpy_mlp:backprop")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "bpcheck: target numpy_mlp:backprop" in run.stdout
    assert "(4 examples per property)" in run.stdout
    assert re.search(r"\b4 passed\b", run.stdout), run.stdout[-800:]   # random and simple values, float32 and float64


def test_buggy_target_fails_naming_the_layer(elsewhere):
    run = pytest_in(elsewhere, "--bpcheck-target", f"{elsewhere / 'buggy_mlp.py'}:backprop", k="candidate and float64")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "buggy_mlp.py:backprop layer" in run.stdout and "class bug" in run.stdout


def test_unloadable_target_is_a_usage_error(elsewhere):
    run = pytest_in(elsewhere, "--bpcheck-target", "no_such_module:backprop")
    assert run.returncode == 4 and "--bpcheck-target: target 'no_such_module:backprop'" in run.stderr


def test_assert_backprop_is_exported_lazily():
    code = ("import sys, bpcheck; "
            "assert 'bpcheck.diagnose.search' not in sys.modules and 'hypothesis' not in sys.modules; "
            "f = bpcheck.assert_backprop; assert 'bpcheck.diagnose.search' in sys.modules; print(f.__name__)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "assert_backprop", run.stderr


@pytest.mark.parametrize("name, phrase", [("mutates_x", "overwrote its input x in place"),
                                          ("stateful_cache_wt", "data from call A leaked into call B")])
def test_right_gradients_with_a_broken_contract_fail_through_the_finding(elsewhere, name, phrase):
    """Right gradients, but x overwritten in place, or W kept (transposed) across calls of the same shapes:
    the plugin's check reports the case-level finding, as every other entry point does."""
    target = f"{REPO / 'tests' / 'hostile' / name}.py:backprop"
    run = pytest_in(elsewhere, "--bpcheck-target", target, k="candidate_agrees_with_truth and float64")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    assert phrase in run.stdout, run.stdout[-3000:]
