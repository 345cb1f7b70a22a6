"""bpcheck op from a user's side: the API (check_op, assert_op), the CLI, saved cases and the schema."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpcheck
from bpcheck import ops
from bpcheck.core.spec import schema
from bpcheck.opcheck import candidates
from bpcheck.ops.cases import draw_case, load, save, schema_document
from bpcheck.opcheck.check import check_op

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference" / "layers.py"
ZOO = ROOT / "tests" / "meta" / "op_zoo"
BPCHECK = [str(Path(sys.executable).parent / "bpcheck")]


def test_schema_enums_are_the_registry():
    """The committed schema is what `bpcheck op --schema` generates from the catalog (regenerate it
    with that command after adding an op)."""
    doc = schema("op_case.schema.json")
    assert doc == schema_document(ops.REGISTRY)
    assert doc["properties"]["op"]["enum"] == list(ops.names())
    assert set(doc["properties"]["family"]["enum"]) == {f for n in ops.names() for f in ops.get(n).families}


def test_a_saved_case_loads_back_bit_for_bit(tmp_path):
    op = ops.get("conv2d")
    case = draw_case(op, "stride_remainder", "float32", 3)
    save(case, tmp_path / "c")
    back = load(tmp_path / "c")
    assert (back.op, back.dtype, back.family, back.seed, back.hyper) == (case.op, case.dtype, case.family,
                                                                         case.seed, case.hyper)
    for k in case.inputs:
        assert back.inputs[k].dtype == case.inputs[k].dtype and np.array_equal(back.inputs[k], case.inputs[k])
    assert np.array_equal(back.cotangent, case.cotangent)


def test_a_malformed_case_file_is_a_clear_value_error(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"op": "layernorm", "dtype": "float16", "family": "plain",
                                                 "seed": 0, "hyper": {}}))
    np.savez(tmp_path / "c.npz", cotangent=np.zeros(1))
    with pytest.raises(ValueError, match="float16"):
        load(tmp_path / "c")


def test_assert_op_raises_with_the_diagnosis_and_passes_the_reference():
    bpcheck.assert_op("layernorm", layers=str(REFERENCE), extended=True)
    with pytest.raises(AssertionError) as err:
        bpcheck.assert_op("layernorm", layers=str(ZOO / "bug_layernorm_double_mean.py"))
    text = str(err.value)
    assert "FAIL" in text and "dx: wrong" in text and "smallest failing case" in text


def test_torch_autograd_function_and_jax_custom_vjp_ways_in():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")

    class Scale(torch.autograd.Function):          # a hand-written backward, right and then wrong
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            return x.reshape(x.shape[0], -1) @ w + b

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return (g @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ g, g.sum(0)

    assert check_op("affine", torch=Scale.apply, per_family=2).verdict == "pass"

    @jax.custom_vjp
    def affine(x, w, b):
        return x.reshape(x.shape[0], -1) @ w + b

    def fwd(x, w, b):
        return affine(x, w, b), (x, w)

    def bwd(res, g):
        x, w = res
        return (g @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ g, g.mean(0)   # db: mean, a slip

    affine.defvjp(fwd, bwd)
    report = check_op("affine", jax=affine, per_family=1)
    assert report.verdict == "fail"
    wrong = [r for r in report.first["rows"] if r["status"] == "bug"]
    assert wrong[0]["tensor"] == "db"


def test_plain_cs231n_code_is_not_asked_for_dilation():
    report = check_op("conv2d", layers=str(ROOT / "examples" / "cs231n_layers.py"))
    assert report.verdict == "pass"
    assert report.notes["unsupported"] > 0
    assert report.coverage[("dilation", "float32")] == 0


def _run(args, cwd):
    return subprocess.run(BPCHECK + args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_pass_fail_and_bad_input(tmp_path):
    ok = _run(["op", "all", "--layers", str(REFERENCE), "--extended"], tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("PASS") == sum(1 for o in ops.REGISTRY.values() if o.cs231n)
    bad = _run(["op", "maxpool2d", "--layers", str(ZOO / "bug_maxpool2d_ties_all_max.py")], tmp_path)
    assert bad.returncode == 1 and "gradient sent to every tied maximum" in bad.stdout
    repro = subprocess.run([sys.executable, str(tmp_path / "bpcheck-op-maxpool2d.py")], capture_output=True,
                           text=True, timeout=120)
    assert repro.returncode == 1 and "dx" in repro.stdout
    for args, words in ((["op", "nonesuch", "--layers", str(REFERENCE)], "unknown op"),
                        (["op", "layernorm"], "exactly one of"),
                        (["op", "layernorm", "--layers", str(tmp_path / "missing.py")], "no such file")):
        run = _run(args, tmp_path)
        assert run.returncode == 2 and words in run.stderr, (args, run.stderr)


def test_a_layer_that_raises_is_a_failure_naming_the_exception(tmp_path):
    path = tmp_path / "raises.py"
    path.write_text("def layernorm_forward(x, gamma, beta, ln_param):\n    raise RuntimeError('boom')\n"
                    "def layernorm_backward(dout, cache):\n    pass\n")
    report = check_op("layernorm", layers=str(path), shrink=False)
    assert report.verdict == "fail"
    assert "RuntimeError: boom" in report.first["rows"][0]["message"]


def test_inputs_overwritten_in_place_are_a_bug(tmp_path):
    path = tmp_path / "inplace.py"
    source = (REFERENCE.read_text() + "\n\ndef affine_backward(dout, cache):\n    x, w = cache\n"
              "    x2 = x.reshape(x.shape[0], -1)\n    dx = (dout @ w.T).reshape(x.shape)\n    x *= 0\n"
              "    return dx, x2.T @ dout, dout.sum(axis=0)\n")
    path.write_text(source)
    report = check_op("affine", layers=str(path), shrink=False)
    assert report.verdict == "fail"
    assert any("overwrote its input x" in r["message"] for r in report.first["rows"])


def test_builtin_limits_are_declined_not_failed():
    report = check_op("batchnorm", candidate=candidates.builtin(ops.get("batchnorm"), "torch"))
    assert report.verdict == "pass" and report.notes["unsupported"] > 0


def test_the_pytest_plugin_checks_every_op_a_layers_module_defines(tmp_path):
    def pytest_run(*extra):
        return subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_layers_target.py"), "-q",
                               "-p", "no:randomly", "-p", "no:cacheprovider", *extra],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    good = pytest_run("--bpcheck-layers", str(ROOT / "examples" / "cs231n_layers.py"), "--bpcheck-extended")
    layered = sum(1 for record in ops.REGISTRY.values() if record.cs231n)
    assert good.returncode == 0 and f"{layered} passed" in good.stdout, good.stdout[-2000:]
    bad = pytest_run("--bpcheck-layers", str(ROOT / "examples" / "buggy_batchnorm.py"))
    assert bad.returncode == 1, bad.stdout[-2000:]
    assert f"1 failed, {layered - 1} skipped" in bad.stdout and "without the mean(dxhat)" in bad.stdout


def test_the_op_report_writes_its_files_and_escapes_its_page(tmp_path):
    """``bpcheck report`` writes ops.json, ops.md, ops.html and ops_cases.jsonl (worker processes
    started by spawn: a forked child of a threaded process can deadlock)."""
    from bpcheck.opcheck.report import op_report
    report = op_report(tmp_path, per_family=1, jax_per_family=1, only=["affine", "relu"], jobs=2,
                       echo=lambda line: None)
    assert {g["op"] for g in report["groups"]} == {"affine", "relu"}
    assert all(g["failing"] == 0 and g["cases"] > 0 for g in report["groups"])
    for name in ("ops.json", "ops.md", "ops.html", "ops_cases.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    page = (tmp_path / "ops.html").read_text()
    assert "<script" not in page and "data:image/png;base64," in page


def _gelu_tanh(x):
    """gelu by its tanh approximation, in torch (jax.nn.gelu's default form)."""
    import torch
    return 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))


def test_gelu_as_its_tanh_approximation_is_jaxs_convention_and_a_wrong_form_is_not():
    report = check_op("gelu", torch=_gelu_tanh, dtypes=("float64",), per_family=2, shrink=False)
    assert report.verdict == "pass" and report.notes.get("convention", 0) > 0, report.summary()
    import torch
    wrong = check_op("gelu", torch=lambda x: 0.5 * x * (1 + torch.tanh(0.8 * x)), dtypes=("float64",),
                     per_family=2, shrink=False)
    assert wrong.verdict == "fail", wrong.summary()


def test_a_scale_hint_names_a_count_only_when_the_case_has_that_many_entries():
    from bpcheck.opcheck.judge import largest_count, scale_hint
    row = lambda scale: {"scale": scale, "cosine": 1.0}  # noqa: E731
    most = largest_count({"x": np.zeros((2, 3))}, {}, np.zeros(4))
    assert most == 6
    assert scale_hint(row(4.0), most) == ["4 times the truth: a sum over 4 entries where a mean was due?"]
    assert scale_hint(row(1 / 6), most) == ["1/6 of the truth: divided by 6 once too often?"]
    assert scale_hint(row(2649427521338299.0), most) == [] and scale_hint(row(1 / 7), most) == []
    assert scale_hint(row(2649427521338299.0)) != []          # the bound is what drops it


def test_an_op_the_module_cannot_be_called_for_is_exit_2_not_a_failure(tmp_path):
    module = tmp_path / "only_affine.py"
    module.write_text((ROOT / "reference" / "layers.py").read_text().split("def batchnorm_forward")[0])
    no_signature = _run(["op", "softmax", "--layers", str(REFERENCE)], tmp_path)
    missing = _run(["op", "batchnorm", "--layers", str(module)], tmp_path)
    assert no_signature.returncode == 2 and "no CS231n-style signature" in no_signature.stdout + no_signature.stderr
    assert missing.returncode == 2 and "defines no batchnorm_forward" in missing.stdout + missing.stderr
    assert "FAIL" not in missing.stdout and "FAIL" not in no_signature.stdout
