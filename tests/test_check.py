"""``bpcheck check CASE.json TARGET``: the judgement of one saved case, and bad input to bpcheck itself --
each a one-line error naming what is wrong, exit 2, no traceback."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpcheck.core.spec import save_case
from tests.helpers.cases import hand_case

BPCHECK = str(Path(sys.executable).with_name("bpcheck"))
REPO = Path(__file__).resolve().parents[1]
NUMPY_MLP = f"{REPO / 'examples' / 'numpy_mlp.py'}:backprop"
BUGGY_MLP = f"{REPO / 'examples' / 'buggy_mlp.py'}:backprop"


def check(*args):
    return subprocess.run([BPCHECK, "check", *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def saved(tmp_path):
    case = hand_case("float64", 0.25, ("tanh", "sigmoid"), case_id="good")
    return save_case(case, tmp_path)


def test_a_correct_and_a_buggy_implementation(saved):
    ok = check(saved, NUMPY_MLP)
    assert ok.returncode == 0 and "verdict: PASS" in ok.stdout and "layer 0 (tanh, 3 units) W" in ok.stdout
    bad = check(saved, BUGGY_MLP)
    assert bad.returncode == 1 and "verdict: FAIL" in bad.stdout and "First wrong link" in bad.stdout


@pytest.mark.parametrize("name, phrase", [("mutates_x", "overwrote its input x in place"),
                                          ("stateful_cache_wt", "data from call A leaked into call B")])
def test_a_broken_contract_is_a_finding(saved, name, phrase):
    """Right gradients (every row ok) but x overwritten, or W kept across same-shaped calls: exit 1 naming it."""
    run = check(saved, f"{REPO / 'tests' / 'hostile' / name}.py:backprop")
    assert run.returncode == 1 and "verdict: FAIL" in run.stdout and phrase in run.stdout, run.stdout
    assert " bug\n" not in run.stdout.split("bug:")[0], run.stdout          # no row is wrong


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _layer(doc, **kw):
    doc["spec"]["layers"][0].update(kw)


BAD_DOCS = {
    "not JSON": (lambda p: p.write_text("{not json"), "not valid JSON"),
    "unknown activation": (lambda p: _edit(p, lambda d: _layer(d, activation="swish")), "'swish' is not one of"),
    "unknown loss": (lambda p: _edit(p, lambda d: d["spec"].update(loss="hinge")), "'hinge' is not one of"),
    "zero units": (lambda p: _edit(p, lambda d: _layer(d, units=0)), "0 is less than the minimum of 1"),
    "negative input": (lambda p: _edit(p, lambda d: d["spec"].update(input_dim=-3)), "less than the minimum"),
    "too many units": (lambda p: _edit(p, lambda d: _layer(d, units=10**6)), "greater than the maximum of 4096"),
    "arrays with a path": (lambda p: _edit(p, lambda d: d.update(arrays="../../etc/passwd.npz")), "does not match"),
    "id with a path": (lambda p: _edit(p, lambda d: d.update(id="../escape")), "does not match"),
    "no arrays file": (lambda p: _edit(p, lambda d: d.update(arrays="missing.npz")), "does not exist"),
    "shapes that do not fit": (lambda p: _edit(p, lambda d: _layer(d, units=5)), "expected (5, 2)"),
}


@pytest.mark.parametrize("name", sorted(BAD_DOCS))
def test_bad_case_files_are_one_line_errors(name, saved):
    spoil, words = BAD_DOCS[name]
    spoil(saved)
    run = check(saved, NUMPY_MLP)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert words in run.stderr and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_pickled_arrays_are_refused(saved):
    npz = saved.with_suffix(".npz")
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["x"] = np.array([{"payload": "object"}], dtype=object)
    np.savez(npz, **arrays)
    run = check(saved, NUMPY_MLP)
    assert run.returncode == 2 and "cannot be read as plain arrays" in run.stderr and "Traceback" not in run.stderr


def test_nan_in_the_inputs_is_refused(saved):
    npz = saved.with_suffix(".npz")
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["x"] = arrays["x"].copy()
    arrays["x"][0, 0] = np.nan
    np.savez(npz, **arrays)
    run = check(saved, NUMPY_MLP)
    assert run.returncode == 2 and "x: contains NaN or infinity" in run.stderr


def test_a_missing_file_and_a_bad_target(saved, tmp_path):
    run = check(tmp_path / "nope.json", NUMPY_MLP)
    assert run.returncode == 2 and "cannot be read" in run.stderr
    run = check(saved, "no_such_module:backprop")
    assert run.returncode == 2 and "cannot import no_such_module" in run.stderr


def test_out_paths_stay_where_they_are_told(tmp_path):
    """Files go under --out, with names from case ids that cannot hold a path."""
    from bpcheck.core.spec import SpecError
    case = hand_case(case_id="../../outside")
    with pytest.raises(SpecError, match="must match"):
        save_case(case, tmp_path / "inside")
    assert not (tmp_path / "outside.json").exists()
