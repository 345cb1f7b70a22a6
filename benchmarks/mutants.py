"""Section 4: time to a caught and shrunk mutant.

``run_validate(target)`` at its default options (one case per cell plus the edge cases, one job,
the target isolated in its own worker process, shrinking on, budget 60 s) on
``examples/buggy_mlp.py`` and on every
``tests/meta/zoo/`` member whose ``EXPECTED["verdict"]`` is "fail", one after another in one
process (bpcheck and its libraries imported before the first clock starts; threads pinned as
``bpcheck validate`` pins them). For each:

- first failing case: seconds from the call until the first record with a failing row or
  finding (class bug or precision) comes back, and its position in the run;
- shrunk: seconds from the call until the diagnosis of the shrunk case exists (when
  run_validate starts writing its reports): generation + the whole run + search, shrink,
  diagnosis and repro; ``verdict["timing"]["diagnose_seconds"]`` is the last part alone;
- the shrunk case's size, and the tensor the diagnosis names against ``EXPECTED["first_wrong"]``.

validate runs every case before it shrinks, so "first failing case + diagnose" is what a
run that stopped at its first failure would take; both are reported.
"""
import ast
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, n_params

BUGGY = "examples/buggy_mlp.py:backprop"
ZOO = Path("tests/meta/zoo")


def expected(path):
    """A zoo member's EXPECTED dict, read from its source (the module is not imported)."""
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPECTED" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def targets(include_zoo=True):
    out = [(BUGGY, {"first_wrong": "delta", "class": "bug", "family": "plain"})]
    if include_zoo and (ROOT / ZOO).is_dir():
        for path in sorted((ROOT / ZOO).glob("*.py")):
            rel = path.relative_to(ROOT)
            exp = expected(rel)
            if exp and exp.get("verdict") == "fail":
                out.append((f"{rel.as_posix()}:backprop", exp))
    return out


def _run_one(target, exp, params):
    import bpcheck.cli.validate
    import bpcheck.run.progress
    from bpcheck.cli.validate import run_validate
    from bpcheck.judge.classify import REAL
    marks = {"records": 0, "first_fail": None, "first_fail_index": None, "reports": None}
    original_advance, original_reports = bpcheck.run.progress.Progress.advance, bpcheck.cli.validate._reports

    def advance(self, record):
        marks["records"] += 1
        items = record.get("rows", []) + record.get("findings", [])
        if marks["first_fail"] is None and record.get("status") == "ok" and any(r["class"] in REAL for r in items):
            marks["first_fail"], marks["first_fail_index"] = time.perf_counter(), marks["records"]
        return original_advance(self, record)

    def reports(*args, **kwargs):
        marks["reports"] = time.perf_counter()
        return original_reports(*args, **kwargs)

    bpcheck.run.progress.Progress.advance, bpcheck.cli.validate._reports = advance, reports
    try:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            verdict = run_validate(target, out_dir=out, progress=False, **params.get("options", {}))
            wall = time.perf_counter() - t0
    finally:
        bpcheck.run.progress.Progress.advance, bpcheck.cli.validate._reports = original_advance, original_reports
    shrunk = verdict.get("shrunk") or {}
    timing = verdict.get("timing") or {}
    row = {"target": target, "name": Path(target.split(":")[0]).stem, "exit_code": verdict["exit_code"],
           "cases": verdict.get("cases"), "failed_cases": verdict.get("failed"),
           "errors": len(verdict.get("errors") or []), "caught": bool(verdict.get("failed")),
           "first_fail_s": marks["first_fail"] - t0 if marks["first_fail"] else None,
           "first_fail_index": marks["first_fail_index"],
           "shrunk_s": marks["reports"] - t0 if marks["reports"] and shrunk else None,
           "diagnose_s": timing.get("diagnose_seconds"), "run_s": timing.get("run_seconds"),
           "shrink_s": shrunk.get("shrink_seconds"), "wall_s": wall,
           "validate_first_failure_s": timing.get("first_failure_seconds"),
           "expected_first_wrong": exp.get("first_wrong"), "expected_class": exp.get("class"),
           "expected_family": exp.get("family")}
    if shrunk.get("spec"):
        spec = shrunk["spec"]
        row["shrunk"] = {"case": shrunk.get("case"), "params": n_params(spec), "layers": len(spec["layers"]),
                         "units": [spec["input_dim"]] + [layer["units"] for layer in spec["layers"]],
                         "batch": shrunk.get("batch"), "dtype": spec.get("dtype"),
                         "tensor": shrunk.get("tensor"), "class": shrunk.get("class"),
                         "note": shrunk.get("note") or ""}
        if row["first_fail_s"] is not None and row["diagnose_s"] is not None:
            row["first_fail_plus_diagnose_s"] = row["first_fail_s"] + row["diagnose_s"]
    return row


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "median": None, "worst": None}
    return {"n": len(values), "median": statistics.median(values), "worst": max(values)}


def mutants(params):
    from benchmarks.throughput import _prelude
    _prelude(frameworks=False)      # threads pinned as `bpcheck validate` pins them; libraries loaded
    import hypothesis  # noqa: F401

    import bpcheck.cli.validate  # noqa: F401
    import bpcheck.diagnose.diagnose  # noqa: F401
    import bpcheck.diagnose.search  # noqa: F401
    import bpcheck.report.report  # noqa: F401
    import bpcheck.report.verdict  # noqa: F401
    rows = []
    for target, exp in targets(params.get("zoo", True))[:params.get("limit")]:
        row = _run_one(target, exp, params)
        rows.append(row)
        print(f"mutants: {row['name']}: exit {row['exit_code']}, first failing case "
              f"{row['first_fail_s'] and round(row['first_fail_s'], 2)} s, shrunk "
              f"{row['shrunk_s'] and round(row['shrunk_s'], 2)} s", flush=True)
    caught = [r for r in rows if r["caught"]]
    return {"rows": rows, "options": params.get("options", {}) or "run_validate defaults",
            "caught": len(caught), "total": len(rows),
            "first_fail_s": summary([r["first_fail_s"] for r in caught]),
            "diagnose_s": summary([r["diagnose_s"] for r in caught]),
            "shrunk_s": summary([r["shrunk_s"] for r in caught]),
            "first_fail_plus_diagnose_s": summary([r.get("first_fail_plus_diagnose_s") for r in caught]),
            "shrunk_params": summary([r["shrunk"]["params"] for r in caught if r.get("shrunk")])}
