"""Judge a batch of cases: the candidate, the truth, the framework oracles, one record per case.

``judge_cases(cases, candidate, oracles=...)`` runs, for each case,

1. the candidate (first: a case it declines costs nothing else); what it
   raises, declines or cannot be read is the record's status;
2. the truth and the rounding bounds (``bpcheck.exact.truth``, ``bpcheck.judge.bounds``);
3. ``bpcheck.judge.judge.judge`` with its case-level findings: inputs overwritten,
   unknown gradient keys, and -- on the first case (``repeat_first``) and on
   every failing one -- the state check, which calls the candidate twice more
   (a case B of the same shapes and other values, then the case again);
4. the framework oracles (torch per case; jax for the whole batch at once,
   ``oracles.jax_oracle.backprop_many``), judged by the same function.

A record never raises: a harness failure on a strange case is recorded with
stage "harness". Records are JSON-able dicts (``bpcheck.core.records``).
"""
import time
import traceback
import warnings

import numpy as np

from bpcheck.exact.truth import exact
from bpcheck.judge.bounds import running_bounds
from bpcheck.judge.compare import SAFETY
from bpcheck.judge.judge import judge
from bpcheck.run.backends import AdapterError, Unsupported

ORACLES = ("torch", "jax")


def _record(case, who):
    return {"case": case.id, "who": who, "spec": case.spec, "batch": int(case.batch), "meta": case.meta,
            "status": "ok", "stage": None, "message": "", "rows": [], "oracle_rows": [], "findings": [],
            "limits": [], "seconds": 0.0}


def judge_cases(cases, candidate, *, who=None, oracles=ORACLES, repeat_first=True):
    """One record per case, in order (see the module docstring)."""
    who = who or getattr(candidate, "name", "candidate")
    records, judged = [], []
    stage = "candidate"

    def rerun(c):                 # the state check's calls: their failures are the candidate's
        nonlocal stage
        stage = "candidate"
        out = candidate.run(c)
        stage = "judge"
        return out

    for n, case in enumerate(cases):
        record, start = _record(case, who), time.perf_counter()
        stage = "candidate"
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                result = candidate.run(case)
                stage = "truth"
                truth = exact(case)
                bounds = running_bounds(case, truth, safety=SAFETY)
                stage = "judge"
                j = judge(case, result, who=who, truth=truth, bounds=bounds, rerun=rerun,
                          rerun_when="always" if n == 0 and repeat_first else "failing")
            record.update(rows=j.rows, findings=j.findings, limits=[lim.reason for lim in bounds.limits])
            judged.append((len(records), case, truth, bounds))
        except Unsupported as exc:
            record.update(status="unsupported", stage=stage, message=str(exc))
        except AdapterError as exc:
            record.update(status="error", stage=stage, message=str(exc))
        except Exception as exc:  # a harness bug on a strange case: record it, go on
            record.update(status="error", stage="harness" if stage != "candidate" else stage, message=(
                f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-3))))
        record["seconds"] = round(time.perf_counter() - start, 5)
        records.append(record)
    if oracles and judged:
        _oracle_rows(records, judged, oracles)
    return records


def _oracle_rows(records, judged, names):
    """Every framework oracle on every judged case, judged like a candidate."""
    start = time.perf_counter()
    results = {name: _run_oracle(name, [case for _, case, _, _ in judged]) for name in names}
    for k, (i, case, truth, bounds) in enumerate(judged):
        for name in names:
            result = results[name][k]
            if isinstance(result, str):
                records[i].setdefault("oracle_errors", []).append(result)
                continue
            with np.errstate(all="ignore"):
                j = judge(case, result, who=name, truth=truth, bounds=bounds)
            records[i]["oracle_rows"] += j.rows
    share = (time.perf_counter() - start) / len(judged)
    for i, *_ in judged:
        records[i]["seconds"] = round(records[i]["seconds"] + share, 5)


def _run_oracle(name, cases):
    """Validated results (or an error message) of framework ``name`` on ``cases``."""
    from bpcheck.core.spec import validate_result
    if name == "jax":
        from oracles import jax_oracle
        batch = getattr(jax_oracle, "backprop_many", None)
        if batch is not None:
            try:
                raw = batch([(c.spec, c.params, c.x, c.y) for c in cases])
                return [validate_result(r, c, who=name) for r, c in zip(raw, cases)]
            except Exception:             # fall back to one case at a time, to say which one fails
                pass
    from bpcheck.run.backends import load_function
    fn = load_function(name)
    out = []
    for case in cases:
        try:
            with np.errstate(all="ignore"):
                out.append(validate_result(fn(case.spec, case.params, case.x, case.y), case, who=name))
        except Exception as exc:
            out.append(f"{name} raised {type(exc).__name__}: {exc}")
    return out
