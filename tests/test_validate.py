"""``bpcheck validate`` end to end on the three examples (NumPy: exit 0; buggy NumPy:
exit 1 naming layer 0; JavaScript: exit 0) and on implementations that decline,
raise, hang, crash, print garbage or answer the wrong id (left out of the draw, or
exit 2 with a clear message -- never a crashed run); a wrong shape is a discrepancy
(exit 1); too few checked cases is no PASS; ``bpcheck export-vectors``."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpcheck.cli.validate import run_validate

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NODE = shutil.which("node")
# A small grid (3 losses x 3 activations x 2 dtypes = 18 cases) keeps each run to seconds.
GRID = dict(losses=["mse", "softmax_cross_entropy", "binary_cross_entropy"],
            activations=["tanh", "relu", "gelu"], dtypes=["float32", "float64"], max_depth=3, min_cases=10)


def validate(target=None, exec_command=None, tmp_path=None, no_shrink=False, **options):
    return run_validate(target, exec_command, out_dir=tmp_path / "out", progress=False, shrink=not no_shrink,
                        **{**GRID, **options})


def test_correct_numpy_implementation_passes(tmp_path):
    verdict = validate(f"{EXAMPLES / 'numpy_mlp.py'}:backprop", tmp_path=tmp_path)
    assert verdict["exit_code"] == 0, verdict
    # 18 plain cases, one per cell; the edge grid: per family and dtype, each of the 3 activations with
    # mse (hidden and output layer) and one case each for softmax and BCE, which fix the output
    assert verdict["checked"] == verdict["cases"] == 18 + 10 * 2 * (3 + 2) and verdict["failed"] == 0
    assert not verdict["errors"] and verdict["families"]["plain"] == 18 and len(verdict["families"]) == 11
    assert all(g["met"] == g["of"] > 0 for g in verdict["coverage"].values()), verdict["coverage"]
    for name in ("index.html", "report.md", "report.json"):
        assert Path(verdict["reports"][name]).is_file()


@pytest.fixture(scope="module")
def buggy(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("buggy")
    return validate(f"{EXAMPLES / 'buggy_mlp.py'}:backprop", tmp_path=tmp_path), tmp_path


def test_buggy_implementation_fails_naming_the_first_wrong_layer(buggy):
    verdict, _ = buggy
    assert verdict["exit_code"] == 1 and verdict["failed"] > 0 and not verdict["errors"]
    found = verdict["shrunk"]
    assert (found["layer"], found["tensor"], found["class"]) == (0, "delta", "bug"), found["diagnosis"]
    assert len(found["spec"]["layers"]) == 2 and found["batch"] == 1
    assert any("'(a) instead of" in h for h in found["hints"])
    assert "BP2 at layer 0" in found["look_at"]


def test_buggy_run_writes_a_repro_that_fails_until_fixed(buggy):
    verdict, tmp_path = buggy
    script = Path(verdict["shrunk"]["repro"])
    assert script.is_file() and Path(verdict["shrunk"]["case_file"]).is_file()
    assert script.with_name(Path(verdict["shrunk"]["case_file"]).stem + ".npz").is_file()
    bad = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout, bad.stdout + bad.stderr
    good = subprocess.run([sys.executable, str(script), f"{EXAMPLES / 'numpy_mlp.py'}:backprop"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr


def test_buggy_report_draws_the_shrunk_case_as_a_graph(buggy):
    verdict, _ = buggy
    html = Path(verdict["reports"]["index.html"]).read_text()
    assert "<svg" in html and "first wrong" in html and 'id="shrunk-z0"' in html
    assert "Diagnosis" in Path(verdict["reports"]["report.md"]).read_text()


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_javascript_implementation_passes_and_skips_what_it_declines(tmp_path):
    verdict = validate(exec_command=f"node {EXAMPLES / 'mlp.js'}", tmp_path=tmp_path)
    assert verdict["exit_code"] == 0, verdict
    assert verdict["name"] == "mlp.js" and verdict["failed"] == 0 and not verdict["errors"]
    # gelu left out of the draw: 12 plain, and per family and dtype 2 activations + softmax + BCE
    assert verdict["skipped"] == 0 and verdict["checked"] == verdict["cases"] == 12 + 10 * 2 * 4
    assert list(verdict["support"]["declined"]) == ["activation gelu"]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return f"{path}:backprop"


def test_not_implemented_is_skipped_and_listed_not_failed(tmp_path):
    target = write(tmp_path, "f64_only.py", f"""
import importlib.util
spec = importlib.util.spec_from_file_location("numpy_mlp", {str(EXAMPLES / 'numpy_mlp.py')!r})
mlp = importlib.util.module_from_spec(spec); spec.loader.exec_module(mlp)
def backprop(spec, params, x, y):
    if spec["dtype"] != "float64":
        raise NotImplementedError("float64 only")
    return mlp.backprop(spec, params, x, y)
""")
    verdict = validate(target, tmp_path=tmp_path)
    # float32 is probed, declined and left out: 9 float64 cells, 2 plain cases each to reach --min-cases 10,
    # and one round of the edge grid in float64 (10 families x (3 activations + softmax + BCE))
    assert verdict["exit_code"] == 0 and verdict["skipped"] == 0 and verdict["checked"] == 18 + 50, verdict
    assert verdict["families"]["plain"] == 18
    assert list(verdict["support"]["declined"]) == ["dtype float32"]
    assert "float64 only" in verdict["support"]["declined"]["dtype float32"]


def test_a_pass_needs_the_stated_minimum_of_checked_cases(tmp_path):
    target = write(tmp_path, "relu_mse_f64.py", f"""
import importlib.util
spec = importlib.util.spec_from_file_location("numpy_mlp", {str(EXAMPLES / 'numpy_mlp.py')!r})
mlp = importlib.util.module_from_spec(spec); spec.loader.exec_module(mlp)
def backprop(spec, params, x, y):
    if x.shape[0] > 4:
        raise NotImplementedError("batches of at most 4")
    return mlp.backprop(spec, params, x, y)
""")
    verdict = validate(target, tmp_path=tmp_path, losses=["mse"], activations=["relu"], dtypes=["float64"],
                       min_cases=40)
    assert verdict["skipped"] > 0 and verdict["checked"] >= 40 and verdict["exit_code"] == 0, verdict
    rare = write(tmp_path, "batch1_only.py", f"""
import importlib.util
spec = importlib.util.spec_from_file_location("numpy_mlp", {str(EXAMPLES / 'numpy_mlp.py')!r})
mlp = importlib.util.module_from_spec(spec); spec.loader.exec_module(mlp)
def backprop(spec, params, x, y):
    if x.shape[0] != 1 and x.shape[1] != 2:      # the probes (batch 2, input 2) pass; few cases do
        raise NotImplementedError("batch 1 only")
    return mlp.backprop(spec, params, x, y)
""")
    few = validate(rare, tmp_path=tmp_path / "few", losses=["mse"], activations=["relu"], dtypes=["float64"],
                   min_cases=50)
    assert few["exit_code"] == 2 and few["too_few"] and few["checked"] < 50 and few["cases"] <= 4 * 50, few


def test_nothing_supported_is_an_error_not_a_pass(tmp_path):
    target = write(tmp_path, "declines.py", "def backprop(*a):\n    raise NotImplementedError('no')\n")
    verdict = validate(target, tmp_path=tmp_path, losses=["mse"], activations=["relu"])
    assert verdict["exit_code"] == 2 and verdict["checked"] == 0


def test_an_implementation_that_raises_is_exit_2_with_its_message(tmp_path):
    target = write(tmp_path, "raises.py", "def backprop(spec, params, x, y):\n    return params['layers.9.W']\n")
    verdict = validate(target, tmp_path=tmp_path, losses=["mse"], activations=["relu"])
    assert verdict["exit_code"] == 2 and len(verdict["errors"]) == verdict["cases"] > 0
    assert "raised KeyError: 'layers.9.W'" in verdict["errors"][0]["message"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    from tests.helpers.protocol import FAKE
    path = tmp_path_factory.mktemp("fake") / "fake_mlp.py"
    path.write_text(FAKE)
    return lambda mode: f"{sys.executable} {path} {mode}"


@pytest.mark.parametrize("mode, message", [
    ("crash", "Segmentation fault (simulated)"),
    ("garbage", "not a JSON line: 'computing gradients...'"),
    ("wrong-id", "reply for id 'case-that-never-was'"),
])
def test_misbehaving_program_is_exit_2_with_a_clear_message(fake, tmp_path, mode, message):
    verdict = validate(exec_command=fake(mode), tmp_path=tmp_path, losses=["mse"], activations=["tanh"],
                       timeout=1.0, min_cases=4)
    assert verdict["exit_code"] == 2 and verdict["checked"] == 0
    assert len(verdict["errors"]) == verdict["cases"] == 24, verdict     # 4 plain, 2 per edge family
    assert all(message in e["message"] for e in verdict["errors"]), verdict
    assert Path(verdict["reports"]["report.json"]).is_file()          # the run finished and reported


def test_a_program_that_hangs_costs_one_timeout_and_a_clear_exit_2(fake, tmp_path):
    """It hangs in the support probes: one timeout, then exit 2 with the reason -- not one timeout per
    probe and per case."""
    verdict = validate(exec_command=fake("hang"), tmp_path=tmp_path, losses=["mse"], activations=["tanh"],
                       timeout=1.0, min_cases=4)
    assert verdict["exit_code"] == 2 and "no answer within the timeout of 1 s" in verdict["error"], verdict


def test_a_wrong_shape_is_a_discrepancy_not_an_adapter_error(fake, tmp_path):
    verdict = validate(exec_command=fake("bad-shape"), tmp_path=tmp_path, losses=["mse"], activations=["tanh"],
                       min_cases=4, no_shrink=True)
    assert verdict["exit_code"] == 1 and verdict["failed"] == verdict["checked"] == 24 and not verdict["errors"]
    assert verdict["classes"]["bug"] >= 4
    report = json.loads(Path(verdict["reports"]["report.json"]).read_text())
    assert any("has shape (1,), expected (" in f["description"] for f in report["failures"])


def test_program_without_hello_is_exit_2_before_any_case(fake, tmp_path):
    verdict = validate(exec_command=fake("bad-hello"), tmp_path=tmp_path)
    assert verdict["exit_code"] == 2 and "hello line is not valid" in verdict["error"]


# ---- the command line -----------------------------------------------------------

def bpcheck(*args, cwd=REPO):
    return subprocess.run([str(Path(sys.executable).with_name("bpcheck")), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_cli_exit_codes_and_json(tmp_path):
    run = bpcheck("validate", "examples/buggy_mlp.py:backprop", "--losses", "sse", "--activations", "sigmoid",
                  "--dtypes", "float64", "--max-depth", "2", "--examples", "2", "--out", str(tmp_path), "--json")
    assert run.returncode == 1, run.stderr
    verdict = json.loads(run.stdout)
    assert verdict["exit_code"] == 1 and verdict["shrunk"]["layer"] == 0
    text = bpcheck("validate", "examples/numpy_mlp.py:backprop", "--losses", "sse", "--activations", "sigmoid",
                   "--dtypes", "float64", "--out", str(tmp_path / "ok"))
    assert text.returncode == 0 and "verdict: PASS (exit 0)" in text.stdout, text.stdout + text.stderr


@pytest.mark.parametrize("args, message", [
    ((), "give exactly one of TARGET or --exec"),
    (("examples/numpy_mlp.py:backprop", "--exec", "node x.js"), "give exactly one"),
    (("no_such_module:backprop",), "cannot import no_such_module"),
    (("examples/numpy_mlp.py:backprop", "--losses", "hinge"), "unknown hinge; choose from"),
])
def test_cli_usage_errors_exit_2(args, message, tmp_path):
    run = bpcheck("validate", *args, "--out", str(tmp_path))
    assert run.returncode == 2 and message in run.stdout + run.stderr, run.stdout + run.stderr


def test_module_target_resolves_from_the_current_directory(tmp_path):
    shutil.copy(EXAMPLES / "numpy_mlp.py", tmp_path / "my_mlp.py")
    run = bpcheck("validate", "my_mlp:backprop", "--losses", "mse", "--activations", "relu", "--dtypes",
                  "float32", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_export_vectors(tmp_path):
    from bpcheck.proof.vectors import check
    from bpcheck.run.protocol import decode_array
    from reference.network import backprop
    run = bpcheck("export-vectors", str(tmp_path), "--losses", "mse,softmax_cross_entropy",
                  "--activations", "tanh,relu")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["count"] == 8
    for entry in manifest["vectors"]:
        assert all((tmp_path / f).is_file() for f in entry["files"])
        doc = json.loads((tmp_path / f"{entry['id']}.vector.json").read_text())
        request = doc["request"]
        out = backprop(request["spec"], {k: decode_array(v, None) for k, v in request["params"].items()},
                       decode_array(request["x"], None), decode_array(request["y"], None))
        for name, g in out["grads"].items():
            t = decode_array(doc["truth"]["grads"][name], None)
            assert np.array_equal(t, np.load(tmp_path / f"{entry['id']}.truth.npz")[f"grads/{name}"])
            assert np.linalg.norm(g - t) <= doc["allowed"][name], (entry["id"], name)
    verdicts = check(tmp_path, backprop)
    assert set(verdicts.values()) == {"pass"} and len(verdicts) == 8

    def doubled(spec, params, x, y):          # the check can fail
        out = backprop(spec, params, x, y)
        out["grads"]["layers.0.W"] = 2 * out["grads"]["layers.0.W"]
        return out
    assert set(check(tmp_path, doubled).values()) == {"fail"}


def test_golden_vector_inputs_are_fixed():
    """Version 1's inputs must never change: a new set is a new version."""
    import hashlib

    from bpcheck.proof.vectors import vector_cases
    h = hashlib.sha256()
    for case in vector_cases():
        h.update(case.id.encode() + json.dumps(case.spec).encode())
        for name in sorted(case.params):
            h.update(case.params[name].tobytes())
        h.update(case.x.tobytes() + case.y.tobytes())
    assert h.hexdigest() == GOLDEN_V1_SHA256


GOLDEN_V1_SHA256 = "013ad136995da65e20628dca8ab11c2c5a74ff381cb47130b2c9aab1a440abc1"
