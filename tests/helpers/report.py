"""Report inputs: a small real run (module-scoped fixture), hand-made records, and records that try to inject markup."""
import pytest

from bpcheck.cases.generate import generate_cases
from bpcheck.report.report import write_reports
from bpcheck.run.pool import run_cases

SMALL = dict(losses=["mse", "softmax_cross_entropy"], activations=["relu", "tanh"])
META = {"seed": 7, "flags": {"examples": 1, "jobs": 1}, "command": "pytest",
        "timing": {"run_seconds": 1.0, "wall_seconds": 1.0}}
HOSTILE = "<script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """8 real cases (2 losses x 2 activations x 2 dtypes) judged with the reference."""
    out = tmp_path_factory.mktemp("run")
    cases = generate_cases(7, 1, **SMALL)
    records = run_cases(cases, "reference", out_dir=out, progress=False, oracles=("torch", "jax"))
    return cases, records, out


def build_report(records, out, **kw):
    """write_reports with a fixed META: report.json, report.md and index.html in ``out``; the report dict."""
    return write_reports(records, out, meta=META, **kw)


def make_row(err, cls, *, case="c1", activation="tanh", who="mine", dtype="float32", layer=0, tensor="W"):
    """A float32 comparison row with error ``err`` u against a tolerance of 40 u, of class ``cls``."""
    tol = 40.0
    return {"case": case, "who": who, "dtype": dtype, "loss_fn": "mse", "depth": 1, "layer": layer,
            "tensor": tensor, "activation": activation, "width": 3, "err_u": err, "rel": err * 2**-24,
            "error": err * 2**-24, "allowed": tol * 2**-24, "sensitivity": tol * 2**-24,
            "tol_u": tol, "margin": tol / err if err else float("inf"), "scale": 1.0, "cosine": 1.0,
            "max_abs": err * 2**-24, "class": cls}


def make_record(case, rows, status="ok", message=""):
    """A case record holding ``rows`` (torch and jax passing the same rows as oracles)."""
    return {"case": case, "who": "mine", "status": status, "stage": None if status == "ok" else "candidate",
            "message": message, "batch": 2, "findings": [], "limits": [], "seconds": 0.1, "meta": {},
            "spec": {"input_dim": 2, "layers": [{"units": 3, "activation": "tanh"}], "loss": "mse",
                     "dtype": "float32"},
            "rows": rows, "oracle_rows": [{**r, "who": o, "class": "pass"} for r in rows for o in ("torch", "jax")]}


def hostile_records():
    """Records whose case ids, activation names and messages try to inject markup."""
    bad_case = f"c0001-{HOSTILE}"
    bad_act = '<img src=x onerror="document.title=\'pwned\'">'
    rows = [make_row(1.5, "pass", case=bad_case, activation=bad_act),
            make_row(3e3, "bug", case=bad_case, activation=bad_act, layer=None, tensor="input_grad")]
    return [make_record(bad_case, rows),
            make_record(f"c0002-{HOSTILE}", [], status="error", message=f"raised {HOSTILE} & <b>bold</b>")]
