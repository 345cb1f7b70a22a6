"""One judgement everywhere: the same cases through every entry point give the same verdict.

Entry points: ``bpcheck.judge.judge.judge`` itself; the engine behind ``bpcheck validate`` and
``bpcheck report`` (``run_cases`` + ``summarize``); ``bpcheck check`` on the command line;
``assert_backprop(cases=...)``; the property tests' check (the pytest plugin runs it against
``--bpcheck-target``); the golden vectors' ``check``; the baselines' bpcheck column
(``member_verdicts``); the false-alarm campaign (``judge_chunk``); and the repro script, both with
bpcheck and standalone (its copy of the tolerance rule). Cases: a pass, a bug, a kink (a pass with a
note) and a dtype limit (a pass with a note), each judged for a correct and a wrong candidate; and
two candidates whose gradients are right but whose contract is not -- one overwrites ``x`` in
place, one keeps W transposed across calls (``tests/hostile/stateful_cache_wt.py``) -- which every
entry point fails through a case-level finding.

Also here: the state check's case B (``bpcheck.judge.judge.other_values``) is a valid case whose exact
values are case A's reordered, so a correct implementation passes it.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpcheck
from bpcheck.cli.check import check_case
from bpcheck.cli.validate import summarize
from bpcheck.core.spec import save_case
from bpcheck.diagnose.repro import write_repro
from bpcheck.judge.judge import judge, other_values
from bpcheck.proof.baselines import member_verdicts
from bpcheck.proof.campaign import judge_chunk
from bpcheck.proof.vectors import check as vectors_check
from bpcheck.run.backends import PythonBackend
from bpcheck.run.pool import Candidate, run_cases
from tests.helpers.cases import hand_case, relu_prime_one, saturated_bce
from tests.helpers.checks import check_agreement

IMPLEMENTATIONS_SOURCE = '''
from reference.network import backprop as reference
from tests.helpers import cases


def correct(spec, params, x, y):
    return reference(spec, params, x, y)


def doubled(spec, params, x, y):
    out = reference(spec, params, x, y)
    out["grads"]["layers.0.W"] = out["grads"]["layers.0.W"] * 2
    return out


def relu_prime_one(spec, params, x, y):
    return cases.relu_prime_one(spec, params, x, y)


def mutates_x(spec, params, x, y):
    from tests.hostile.mutates_x import backprop
    return backprop(spec, params, x, y)


def stateful(spec, params, x, y):
    from tests.hostile.stateful_cache_wt import backprop
    return backprop(spec, params, x, y)
'''


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """``target(name)``: "path:name" of an implementation; ``target(name, as_backprop=True)`` the path of
    a file whose ``backprop`` is it (what the baselines load)."""
    directory = tmp_path_factory.mktemp("impl")
    path = directory / "entry_implementations.py"
    path.write_text(IMPLEMENTATIONS_SOURCE)
    for name in ("correct", "doubled", "relu_prime_one", "mutates_x", "stateful"):
        (directory / f"entry_{name}.py").write_text(
            "import importlib.util\n"
            f"_spec = importlib.util.spec_from_file_location('entry_implementations_{name}', {str(path)!r})\n"
            "_module = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_module)\n"
            f"backprop = _module.{name}\n")
    return lambda name, as_backprop=False: directory / f"entry_{name}.py" if as_backprop else f"{path}:{name}"


def cases():
    plain = hand_case("float32", 0.25, ("tanh", "sigmoid"), case_id="plain")
    kink = hand_case("float64", 0.0, case_id="kink")
    limit = saturated_bce("float32")
    limit.id = "limit"
    return {"plain": plain, "kink": kink, "limit": limit}


EXPECTED = {("plain", "correct"): "pass", ("plain", "doubled"): "fail",
            ("kink", "relu_prime_one"): "pass", ("kink", "doubled"): "fail",
            ("limit", "correct"): "pass", ("limit", "doubled"): "pass",   # past the limit: notes only
            ("plain", "mutates_x"): "fail", ("plain", "stateful"): "fail"}   # right gradients, broken contract
FINDING = {"mutates_x": "mutated_input", "stateful": "state_leak"}   # the finding that fails them


def _function(name):
    from reference.network import backprop as reference
    if name == "relu_prime_one":
        return relu_prime_one
    if name == "mutates_x":
        from tests.hostile.mutates_x import backprop
        return backprop
    if name == "stateful":
        from tests.hostile.stateful_cache_wt import backprop
        return backprop
    if name == "correct":
        return reference

    def doubled(spec, params, x, y):
        out = reference(spec, params, x, y)
        out["grads"]["layers.0.W"] = out["grads"]["layers.0.W"] * 2
        return out
    return doubled


@pytest.mark.parametrize("case_name, impl", sorted(EXPECTED))
def test_every_entry_point_gives_the_same_verdict(case_name, impl, targets, tmp_path):
    case, expected = cases()[case_name], EXPECTED[(case_name, impl)]
    given = {"x": case.x.copy(), "y": case.y.copy(), **{k: v.copy() for k, v in case.params.items()}}
    fn = _function(impl)
    backend = PythonBackend(fn, impl)
    with np.errstate(all="ignore"):
        j = judge(case, backend.run(case), who=impl, rerun=backend.run)
    verdicts = {"judge": j.verdict()}
    if impl in FINDING:      # failed by the finding, not by a row
        assert [f["kind"] for f in j.findings] == [FINDING[impl]] and not j.failures, (j.findings, j.failures)

    with np.errstate(all="ignore"):
        records = run_cases([case], Candidate(targets(impl)), out_dir=tmp_path / "run", progress=False)
    verdicts["engine (validate, report)"] = "fail" if summarize(records)["failed"] else "pass"

    save_case(case, tmp_path / "case")
    code, _ = check_case(tmp_path / "case" / f"{case.id}.json", targets(impl))
    verdicts["bpcheck check"] = {0: "pass", 1: "fail"}[code]

    try:
        bpcheck.assert_backprop(fn, cases=[case])
        verdicts["assert_backprop"] = "pass"
    except AssertionError:
        verdicts["assert_backprop"] = "fail"

    try:
        check_agreement(case, PythonBackend(fn, impl))
        verdicts["property check (pytest plugin)"] = "pass"
    except AssertionError:
        verdicts["property check (pytest plugin)"] = "fail"

    (tmp_path / "case" / "manifest.json").write_text(json.dumps({"vectors": [{"id": case.id}]}))
    (verdicts["golden vectors check"],) = vectors_check(tmp_path / "case", fn).values()

    with np.errstate(all="ignore"):
        baseline = member_verdicts(targets(impl, as_backprop=True), impl, [case])
    verdicts["baselines (bpcheck column)"] = {"p": "pass", "f": "fail"}[baseline["verdicts"]["bpcheck"]]

    (line,) = judge_chunk([case], [(impl, PythonBackend(fn, impl))])
    verdicts["false-alarm campaign"] = line["who"][impl]["verdict"]

    script = write_repro(case, j.rows, j.truth, tmp_path / "repro", target=targets(impl), finding="")
    with_bpcheck = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    verdicts["repro script"] = {0: "pass", 1: "fail"}[with_bpcheck.returncode]
    assert verdicts == {k: expected for k in verdicts}, verdicts
    # No entry point hands the case's own arrays to the implementation (mutates_x would change them).
    for name, value in {"x": case.x, "y": case.y, **case.params}.items():
        np.testing.assert_array_equal(value, given[name], err_msg=name)

    standalone = subprocess.run([sys.executable, str(script), "--standalone"], capture_output=True, text=True,
                                timeout=120)
    # The standalone copy knows the tolerance rule, not kinks, dtype limits or case-level findings:
    # it agrees wherever no note or finding is due.
    if not j.notes and not j.findings:
        assert {0: "pass", 1: "fail"}[standalone.returncode] == expected, standalone.stdout


@pytest.mark.parametrize("loss", ["half_sse", "softmax_cross_entropy", "binary_cross_entropy"])
def test_case_b_is_case_a_reordered(loss):
    """B's exact values (the arbiter on B) put back into A's layout are A's exact values; B has A's spec
    and shapes but other values; and a correct implementation's result on B passes A's judgement."""
    from reference.network import backprop as reference

    from bpcheck.cases import strategies as bst
    from bpcheck.core.spec import validate_case
    from bpcheck.exact.truth import exact
    drawn = (bst.numpy_case(np.random.default_rng(seed), losses=[loss], dtypes=["float64"]) for seed in range(100))
    case = next(c for c in drawn if c.batch > 1 and c.spec["layers"][-1]["units"] > 1)   # every axis reordered
    case_b, back = other_values(case)
    validate_case(case_b)
    assert case_b.spec == case.spec and case_b.x.shape == case.x.shape and case_b.y.shape == case.y.shape
    assert not np.array_equal(case_b.x, case.x) and not np.array_equal(case_b.params["layers.0.W"],
                                                                       case.params["layers.0.W"])
    truth_a, truth_b = exact(case), back(exact(case_b))
    assert truth_b["loss"] == pytest.approx(truth_a["loss"], rel=1e-15)
    for kind in ("grads", "activations", "deltas"):
        for name, value in truth_a[kind].items():
            np.testing.assert_allclose(truth_b[kind][name], value, rtol=1e-14, atol=1e-300, err_msg=f"{kind} {name}")
    np.testing.assert_allclose(truth_b["input_grad"], truth_a["input_grad"], rtol=1e-14, atol=1e-300)
    backend = PythonBackend(reference, "reference")
    with np.errstate(all="ignore"):
        assert judge(case, back(backend.run(case_b)), truth=truth_a).verdict() == "pass"


def test_the_state_check_says_which_call_leaked():
    """A cache of W kept across same-shaped calls: B (after A) is wrong, A's repeat right -- A leaked into B.
    Buffers that accumulate every call's gradients: A's repeat (after B) differs -- B leaked into A.
    Neither is seen without ``rerun``; the reference is flagged by neither."""
    from bpcheck.run.backends import load_target
    hostile = Path(__file__).resolve().parent / "hostile"
    case = cases()["plain"]
    expect = {"stateful_cache_wt": ("state_leak", "data from call A leaked into call B"),
              "accumulates": ("nondeterministic", "data from call B leaked into it")}
    for name, (kind, phrase) in expect.items():
        backend = load_target(f"{hostile / name}.py:backprop", name)   # a fresh module: no state yet
        with np.errstate(all="ignore"):
            first = backend.run(case)
            assert judge(case, first, who=name).verdict() == "pass"          # one call: right
            j = judge(case, first, who=name, rerun=backend.run)
        assert [f["kind"] for f in j.findings] == [kind] and phrase in j.findings[0]["message"], j.findings
    backend = load_target("reference")
    with np.errstate(all="ignore"):
        assert judge(case, backend.run(case), rerun=backend.run).findings == []


def test_an_internal_error_exits_3_not_1(monkeypatch, capsys):
    """A failure of bpcheck's own (here: a command module that cannot be imported) must not read as a
    verdict on the code under test: exit 3, with the traceback."""
    import builtins
    from bpcheck.cli import entry
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "bpcheck.cli.cli":
            raise ImportError("cannot import name '_choices'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", broken)
    monkeypatch.delitem(sys.modules, "bpcheck.cli.cli", raising=False)
    monkeypatch.setattr(sys, "argv", ["bpcheck", "--help"])
    with pytest.raises(SystemExit) as stop:
        entry.run()
    assert stop.value.code == 3
    assert "internal error" in capsys.readouterr().err
