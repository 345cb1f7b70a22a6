"""One judgement everywhere: the same cases through every entry point give the same verdict.

Entry points: ``bpcheck.judge.judge`` itself; the engine behind ``bpcheck validate`` and
``bpcheck report`` (``run_cases`` + ``summarize``); ``bpcheck check`` on the command line;
``assert_backprop(cases=...)``; the property tests' check (the pytest plugin runs it against
``--bpcheck-target``); the golden vectors' ``check``; and the repro script, both with bpcheck
and standalone (its copy of the tolerance rule). Cases: a pass, a bug, a kink (a pass with a
note) and a dtype limit (a pass with a note), each judged for a correct and a wrong candidate.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import bpcheck
from bpcheck.backends import PythonBackend
from bpcheck.check import check_case
from bpcheck.judge import judge
from bpcheck.pool import Candidate, run_cases
from bpcheck.repro import write_repro
from bpcheck.spec import save_case
from bpcheck.validate import summarize
from bpcheck.vectors import check as vectors_check
from tests.test_compare import _case, _relu_prime_one, _saturated_bce
from tests.test_properties import check_agreement

IMPLEMENTATIONS_SOURCE = '''
from reference.network import backprop as reference
from tests.test_compare import _relu_prime_one


def correct(spec, params, x, y):
    return reference(spec, params, x, y)


def doubled(spec, params, x, y):
    out = reference(spec, params, x, y)
    out["grads"]["layers.0.W"] = out["grads"]["layers.0.W"] * 2
    return out


def relu_prime_one(spec, params, x, y):
    return _relu_prime_one(spec, params, x, y)
'''


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    path = tmp_path_factory.mktemp("impl") / "entry_implementations.py"
    path.write_text(IMPLEMENTATIONS_SOURCE)
    return lambda name: f"{path}:{name}"


def cases():
    plain = _case("float32", 0.25, ("tanh", "sigmoid"), case_id="plain")
    kink = _case("float64", 0.0, case_id="kink")
    limit = _saturated_bce("float32")
    limit.id = "limit"
    return {"plain": plain, "kink": kink, "limit": limit}


EXPECTED = {("plain", "correct"): "pass", ("plain", "doubled"): "fail",
            ("kink", "relu_prime_one"): "pass", ("kink", "doubled"): "fail",
            ("limit", "correct"): "pass", ("limit", "doubled"): "pass"}   # past the limit: notes only


def _function(name):
    from reference.network import backprop as reference
    if name == "relu_prime_one":
        return _relu_prime_one
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
    fn = _function(impl)
    with np.errstate(all="ignore"):
        result = PythonBackend(fn, impl).run(case)
    verdicts = {"judge": judge(case, result, who=impl).verdict()}

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

    j = judge(case, result, who=impl)
    script = write_repro(case, j.rows, j.truth, tmp_path / "repro", target=targets(impl), finding="")
    with_bpcheck = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    verdicts["repro script"] = {0: "pass", 1: "fail"}[with_bpcheck.returncode]
    assert verdicts == {k: expected for k in verdicts}, verdicts

    standalone = subprocess.run([sys.executable, str(script), "--standalone"], capture_output=True, text=True,
                                timeout=120)
    # The standalone copy knows the tolerance rule, not kinks or dtype limits: it agrees wherever no note is due.
    if not j.notes:
        assert {0: "pass", 1: "fail"}[standalone.returncode] == expected, standalone.stdout
