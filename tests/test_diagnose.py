"""Diagnosis: the first wrong link, the hints (each on a constructed wrong gradient),
the computation-graph SVG, shrinking with Hypothesis, assert_backprop and the repro script."""
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from bpcheck.core.spec import validate_result
from bpcheck.diagnose.diagnose import diagnose
from bpcheck.diagnose.graph import graph_svg
from bpcheck.exact.truth import exact
from bpcheck.judge.judge import chain_order, first_divergence, judge
from bpcheck.proof.vectors import vector_case
from bpcheck.run.backends import load_target

REPO = Path(__file__).resolve().parents[1]
NUMPY_MLP = f"{REPO / 'examples' / 'numpy_mlp.py'}:backprop"
BUGGY_MLP = f"{REPO / 'examples' / 'buggy_mlp.py'}:backprop"


def constructed(case, mutate):
    """A 'candidate' that is the truth rounded to the case dtype, with ``mutate`` applied; diagnosed."""
    truth = exact(case)
    dtype = case.spec["dtype"]
    result = {"loss": truth["loss"], "grads": {k: v.astype(dtype) for k, v in truth["grads"].items()},
              "input_grad": truth["input_grad"].astype(dtype),
              "deltas": {k: v.astype(dtype) for k, v in truth["deltas"].items()}}
    mutate(result, truth)
    result = validate_result(result, case)
    j = judge(case, result, who="constructed", truth=truth)
    return diagnose(case, result, truth, j.rows, j.findings)


def test_the_rounded_truth_passes():
    d = constructed(vector_case("mse", "tanh", "float32"), lambda r, t: None)
    assert d.first is None and d.text() == "no failing tensor"


@pytest.mark.parametrize("tensor, factor, expected", [
    ("layers.1.b", 2.0, "gradient is 2× the truth: a missing ½"),
    ("layers.2.W", 4.0, "gradient is 4× the truth: sum instead of mean over the batch (B = 4)?"),
    ("layers.0.W", 0.25, "mean instead of sum over the batch (B = 4)"),
    ("layers.0.b", -1.0, "sign flipped"),
])
def test_hint_reads_a_constant_factor(tensor, factor, expected):
    def mutate(result, truth):
        result["grads"][tensor] = result["grads"][tensor] * factor
    d = constructed(vector_case("mse", "tanh", "float64"), mutate)
    layer, name = tensor.split(".")[1:]
    assert (d.first["layer"], d.first["tensor"], d.first["class"]) == (int(layer), name, "bug")
    assert any(expected in h for h in d.hints), d.hints
    assert "look at: BP" in d.text()


def test_hint_sees_a_transpose_hidden_by_a_reshape():
    def mutate(result, truth):
        W = truth["grads"]["layers.1.W"]                      # (3, 4)
        result["grads"]["layers.1.W"] = W.T.reshape(W.shape)  # a_prev.T @ delta, reshaped to fit
    d = constructed(vector_case("sse", "sigmoid", "float64"), mutate)
    assert (d.first["layer"], d.first["tensor"]) == (1, "W")
    assert any("matches the transpose" in h for h in d.hints), d.hints


def kinked_case():
    """ReLU net whose first layer has z = 0 exactly in batch row 0 (x row 0 and b_0 are zero)."""
    case = vector_case("mse", "relu", "float64")
    case.x[0] = 0
    case.params["layers.0.b"][:] = 0
    return case


def test_hint_sees_a_kink_convention():
    case = kinked_case()

    def mutate(result, truth):                 # relu'(0) = 1 instead of 0, in layer 0 only
        upstream = truth["deltas"]["layers.1"] @ case.params["layers.1.W"]
        delta = upstream * (truth["pre_activations"]["layers.0"] >= 0)
        result["deltas"]["layers.0"] = delta
        result["grads"]["layers.0.b"], result["grads"]["layers.0.W"] = delta.sum(0), delta.T @ case.x
        result["input_grad"] = delta @ case.params["layers.0.W"]
    d = constructed(case, mutate)
    assert d.first is None and all(r["class"] in ("pass", "kink") for r in d.rows), d.text()
    kink = next(r for r in d.rows if r["class"] == "kink")
    assert "other one-sided derivative" in kink["note"]


def test_a_bug_behind_a_kink_is_still_a_bug():
    case = kinked_case()

    def mutate(result, truth):                 # relu'(0) = 1 at the kink, and dC/dW_0 doubled everywhere
        upstream = truth["deltas"]["layers.1"] @ case.params["layers.1.W"]
        delta = upstream * (truth["pre_activations"]["layers.0"] >= 0)
        result["deltas"]["layers.0"] = delta
        result["grads"]["layers.0.b"], result["grads"]["layers.0.W"] = delta.sum(0), 2 * delta.T @ case.x
        result["input_grad"] = delta @ case.params["layers.0.W"]
    d = constructed(case, mutate)
    assert (d.first["layer"], d.first["tensor"], d.first["class"]) == (0, "W", "bug"), d.text()


def test_bp2_slips_are_recognised():
    from tests.meta.zoo import load
    case = vector_case("half_sse", "tanh", "float64")
    truth = exact(case)
    for fn, expected in [(load_target(BUGGY_MLP).fn, "matches BP2 with tanh'(a) instead of tanh'(z)"),
                         (load("bug_middle_layers").backprop, "matches BP2 without the ⊙ f'(z) factor")]:
        result = validate_result(fn(case.spec, case.params, case.x, case.y), case)
        j = judge(case, result, who=fn.__name__, truth=truth)
        d = diagnose(case, result, truth, j.rows)
        assert (d.first["layer"], d.first["tensor"]) in {(1, "delta"), (1, "b")}, d.text()
        assert any(expected in h for h in d.hints), d.hints


def test_no_kink_hint_for_a_smooth_activation_at_zero():
    """z = 0 exactly is common in shrunk cases; it is a kink only for relu and leaky_relu."""
    case = vector_case("sse", "sigmoid", "float32")
    case.x[:] = 0
    for i in range(3):
        case.params[f"layers.{i}.b"][:] = 0
    result = load_target(BUGGY_MLP).run(case)
    j = judge(case, result)
    d = diagnose(case, result, j.truth, j.rows)
    assert d.first is not None and not any("kink" in h for h in d.hints), d.hints


def test_chain_order_walks_forward_then_back_from_the_loss():
    rows = [{"layer": layer, "tensor": tensor, "class": "pass"} for layer, tensor in
            [(None, "input_grad"), (0, "W"), (0, "b"), (0, "delta"), (1, "W"), (1, "delta"), (1, "b"),
             (None, "loss"), (1, "activation"), (0, "activation")]]
    order = [(r["layer"], r["tensor"]) for r in chain_order(rows)]
    assert order == [(0, "activation"), (1, "activation"), (None, "loss"), (1, "delta"), (1, "b"), (1, "W"),
                     (0, "delta"), (0, "b"), (0, "W"), (None, "input_grad")]
    rows[1]["class"] = rows[6]["class"] = "bug"           # layer 0 W and layer 1 b wrong
    assert (first_divergence(rows)["layer"], first_divergence(rows)["tensor"]) == (1, "b")


def test_graph_svg_colours_nodes_and_escapes_text():
    case = vector_case("mse", "tanh", "float64")
    d = constructed(case, lambda r, t: r["grads"].__setitem__("layers.1.b", 2 * r["grads"]["layers.1.b"]))
    for row in d.rows:
        row["who"] = "<script>alert(1)</script>"
    svg = graph_svg(case, d.rows, d.first, uid="t1")
    root = ET.fromstring(svg)                                # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    nodes = {g.get("id"): g for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert {"t1-x", "t1-loss", "t1-z0", "t1-a2", "t1-W1", "t1-b1"} <= set(nodes)
    rect = lambda uid: nodes[uid].find("s:rect", ns)  # noqa: E731
    assert rect("t1-b1").get("stroke-width") == "3.5"       # the first wrong link stands out
    assert rect("t1-b1").get("fill") not in ("#a5d6a7", "#e0e0e0") and rect("t1-W1").get("fill") == "#a5d6a7"
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "first wrong" in svg


# ---- shrinking, assert_backprop, repro ------------------------------------------

@pytest.fixture(scope="module")
def shrunk():
    from bpcheck.cases import strategies as bst
    from bpcheck.diagnose.search import search
    start = time.monotonic()
    outcome = search(load_target(BUGGY_MLP), bst.cases(arrays="seeded"), max_examples=30, seed=0, budget=60)
    return outcome, time.monotonic() - start


def test_shrinking_finds_the_smallest_network_and_names_the_layer(shrunk):
    outcome, seconds = shrunk
    case = outcome.judged.case
    assert len(case.spec["layers"]) == 2 and case.spec["input_dim"] == 1 and case.batch == 1
    assert all(layer["units"] == 1 for layer in case.spec["layers"])
    d = diagnose(case, outcome.judged.result, outcome.judged.truth, outcome.judged.rows)
    assert (d.layer, d.first["tensor"], d.first["class"]) == (0, "delta", "bug")
    assert any("'(a) instead of" in h for h in d.hints)
    assert seconds < 60, f"search + shrink took {seconds:.1f} s"


def test_repro_script_stands_alone(shrunk, tmp_path):
    from bpcheck.diagnose.repro import write_repro
    outcome, _ = shrunk
    j = outcome.judged
    j.case.id = "shrunk"
    script = write_repro(j.case, j.rows, j.truth, tmp_path / "repro", target=BUGGY_MLP, finding="the finding")
    text = script.read_text()
    assert not re.search(r"^(import|from) bpcheck", text, re.M)     # bpcheck only inside bpcheck_verdict
    run = lambda *args: subprocess.run([sys.executable, "-I", str(script), *args], capture_output=True,  # noqa: E731
                                       text=True, cwd=tmp_path, timeout=120)
    bad = run("--standalone")
    assert bad.returncode == 1, bad.stderr
    assert "layers.0.delta" in bad.stdout and "MISMATCH" in bad.stdout and "the finding" in bad.stdout
    assert "bpcheck's judgement" not in bad.stdout
    good = run("--standalone", NUMPY_MLP)
    assert good.returncode == 0 and "every tensor matches" in good.stdout, good.stdout + good.stderr
    judged = run()                             # bpcheck is installed here: its verdict decides, and agrees
    assert judged.returncode == 1 and "bpcheck's judgement: FAIL" in judged.stdout, judged.stdout


def test_assert_backprop_passes_a_correct_implementation():
    import bpcheck
    bpcheck.assert_backprop(load_target(NUMPY_MLP).fn, examples=8, dtypes=["float32"], max_depth=3)


def test_assert_backprop_raises_with_the_diagnosis():
    import bpcheck
    with pytest.raises(AssertionError) as info:
        bpcheck.assert_backprop(load_target(BUGGY_MLP).fn, examples=20, max_depth=3, name="buggy")
    message = str(info.value)
    assert "buggy is wrong on a case shrunk to: input_dim 1, layers [" in message
    assert "layer 0" in message and "'(a) instead of" in message and "look at: BP2 at layer 0" in message


def test_assert_backprop_skips_unsupported_and_says_when_nothing_was_checked():
    import bpcheck

    def declines(spec, params, x, y):
        raise NotImplementedError("nothing at all")
    with pytest.raises(AssertionError, match=r"no case could be checked; every drawn case was declined:\n  skipped \d+x: .*nothing at all"):
        bpcheck.assert_backprop(declines, examples=5)


# ---- explain: the lines only failing cases run ----------------------------------

ZOO_SIGMOID = REPO / "tests" / "meta" / "zoo" / "bug_sigmoid_fprime_of_a.py"


def _buggy_line():
    return next(n for n, line in enumerate(ZOO_SIGMOID.read_text().splitlines(), 1)
                if line.strip().startswith('"sigmoid": lambda g, z, a: g * _sig(a)'))


def test_validate_names_the_line_only_failing_cases_run(tmp_path):
    from bpcheck.cli.validate import run_validate
    verdict = run_validate(f"{ZOO_SIGMOID}:backprop", out_dir=tmp_path, progress=False, min_cases=40,
                           losses=["sse", "mse"], activations=["sigmoid", "tanh", "relu"], max_depth=3)
    assert verdict["exit_code"] == 1
    assert any(line.startswith(f"bug_sigmoid_fprime_of_a.py:{_buggy_line()}:") for line in verdict["shrunk"]["explain"])


def test_assert_backprop_names_the_line_and_hides_its_frames():
    import bpcheck
    from bpcheck.run.backends import load_function
    with pytest.raises(AssertionError) as info:
        bpcheck.assert_backprop(load_function(f"{ZOO_SIGMOID}:backprop"), examples=20, max_depth=3,
                                activations=["sigmoid", "tanh"], name="zoo")
    assert f"bug_sigmoid_fprime_of_a.py:{_buggy_line()}:" in str(info.value)
    assert any(entry.name == "assert_backprop" and entry.locals.get("__tracebackhide__")
               for entry in [tb for tb in _frames(info.tb)])


def test_explain_names_nothing_for_a_line_every_call_runs(tmp_path):
    from bpcheck.cli.validate import run_validate
    verdict = run_validate(f"{REPO / 'tests' / 'meta' / 'zoo' / 'bug_loss_off_b.py'}:backprop", out_dir=tmp_path,
                           progress=False, min_cases=20, losses=["softmax_cross_entropy"], activations=["tanh"])
    assert verdict["exit_code"] == 1 and verdict["shrunk"]["explain"] == []


def _frames(tb):
    import types
    out = []
    while isinstance(tb, types.TracebackType):
        out.append(types.SimpleNamespace(name=tb.tb_frame.f_code.co_name, locals=tb.tb_frame.f_locals))
        tb = tb.tb_next
    return out


def _member_on_family(member, family, loss, act, dtype):
    """Diagnose a zoo member on the default run's grid case of ``family`` for the cell's activation
    ``act`` and ``dtype`` (and ``loss``, if given)."""
    from bpcheck.cases.generate import generate_cases
    from bpcheck.run.backends import PythonBackend
    from tests.meta.zoo import load
    case = next(c for c in generate_cases(1, 1) if c.meta["family"] == family
                and act in (None, c.meta["cell"]["activation"])
                and c.meta["cell"]["dtype"] == dtype and loss in (None, c.meta["cell"]["loss"]))
    with np.errstate(all="ignore"):
        result = PythonBackend(load(member).backprop, member).run(case)
    j = judge(case, result, who=member)
    return diagnose(case, result, j.truth, j.rows, j.findings)


def test_a_zero_where_the_truth_is_tiny_names_an_absolute_accuracy_formula():
    """sigma as 1/2 + 1/2 tanh(z/2) on a layer wholly at z in [-40, -8] (float32): exact zeros where
    sigma is tiny but not 0. Not 'never computed': the hint names the formula family and the fix."""
    d = _member_on_family("bug_sigmoid_via_tanh", "saturated_neg", None, "sigmoid", "float32")
    assert d.first is not None and d.first["activation"] == "sigmoid"
    text = " ".join(d.hints)
    assert "absolute, not relative, accuracy" in text and "tanh(z/2)" in text, d.hints
    assert "never computed" not in text


def test_all_zeros_where_the_truth_is_not_tiny_is_still_never_computed():
    def mutate(result, truth):
        result["grads"]["layers.1.W"] = result["grads"]["layers.1.W"] * 0.0
    d = constructed(vector_case("mse", "tanh", "float64"), mutate)
    assert any("never computed" in h for h in d.hints) and not any("absolute" in h for h in d.hints), d.hints


def test_an_infinite_softmax_loss_names_the_log_sum_exp_form():
    """-log(p[y]) of a p that underflowed: the loss is inf where the truth is finite."""
    d = _member_on_family("bug_softmax_log_of_prob", "exp_overflow", "softmax_cross_entropy", None, "float32")
    assert d.first["tensor"] == "loss"
    assert any("log of a softmax probability that underflowed" in h and "log-sum-exp" in h for h in d.hints), d.hints
