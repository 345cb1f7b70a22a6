"""The false-alarm campaign: correct implementations on many cases, every verdict must be a pass.

``bpcheck selftest --false-alarms N`` draws N cases or more of the default
distribution (``bpcheck.cases.generate``: plain cases and 40% from the edge families)
and judges, on each, every implementation known to be correct: the NumPy
reference, torch and jax (the oracles, as candidates) and the zoo's correct
members -- a per-example loop in column form, a scalar autodiff, the textbook
formulas, other stable formulas, torch autograd (the JAX member, which compiles
per architecture, is left out; jax itself is in). The truth and the tolerances
are computed once per case and shared. A false alarm is a verdict "fail" (a row
or finding of class bug or precision) for any of them.

Per case one JSON line goes to ``OUT/false_alarms.jsonl`` (streamed; ``--resume``
continues); ``false_alarms.json`` and ``false_alarms.md`` hold, per implementation
and dtype: cases, false alarms, notes, the smallest margins and the largest
error / (u ||s||) -- how much of the safety factor the worst case used. A case
that raises a false alarm is saved (``OUT/false_alarms/<id>.json`` + ``.npz``)
so that ``bpcheck check`` reproduces it.
"""
import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from bpcheck.core.records import case_from_json, case_to_json, jsonable
from bpcheck.judge.classify import NOTES
from bpcheck.proof.zoo import ZOO, members

SLOW = ("ok_jax_grad",)           # compiles once per architecture: ~1 s a case here
_WORKER = {}


def candidates(zoo=ZOO):
    """[(name, backend)] of the correct implementations, built in this process."""
    from bpcheck.run.backends import PythonBackend, load_function, load_target
    out = [("reference", load_target("reference"))]
    out += [(name, PythonBackend(load_function(f"{path}:backprop"), name)) for name, path, expected in members(zoo)
            if expected["verdict"] == "pass" and name not in SLOW]
    return out


def judge_chunk(cases, named):
    """One summary per case: per implementation, its verdict, classes, smallest margin and worst z."""
    from bpcheck.run.engine import _run_oracle
    jax_results = _run_oracle("jax", cases)
    out = []
    for k, case in enumerate(cases):
        start = time.perf_counter()
        line = {"case": case.id, "family": case.meta.get("family"), "dtype": case.spec["dtype"],
                "loss": case.spec["loss"], "who": {}}
        try:
            _judge_all(case, named, jax_results[k], line, state_check="always" if k == 0 else "failing")
        except Exception as exc:           # bpcheck's own failure on this case: kept, counted, never hidden
            line["harness_error"] = f"{type(exc).__name__}: {exc}"[:300]
        line["seconds"] = round(time.perf_counter() - start, 4)
        out.append(line)
    return out


def _judge_all(case, named, jax_result, line, state_check="failing"):
    """Fill ``line["who"]``: every implementation's judgement of ``case``, case-level findings
    included: the state check (``bpcheck.judge.judge.state_findings``) runs where ``state_check`` says
    ("always" or "failing"; jax, which compiles per architecture, only where it fails). An
    implementation that raises is a verdict "error"; raises what the arbiter raises."""
    from bpcheck.exact.truth import exact
    from bpcheck.judge.bounds import running_bounds
    from bpcheck.judge.compare import SAFETY
    from bpcheck.judge.judge import judge
    from bpcheck.run.backends import AdapterError, Unsupported
    from bpcheck.run.engine import _run_oracle
    with np.errstate(all="ignore"):
        truth = exact(case)
        bounds = running_bounds(case, truth, safety=SAFETY)
        line["unbounded"] = sum(not np.isfinite(v).all() for v in bounds.scale.values())
        def oracle(name):
            def run(c):
                result = _run_oracle(name, [c])[0]
                if isinstance(result, str):
                    raise AdapterError(result)
                return result
            return run
        runs = [(name, backend.run, backend.run, state_check) for name, backend in named]
        runs += [("torch", oracle("torch"), oracle("torch"), state_check),
                 ("jax", lambda c: jax_result, oracle("jax"), "failing")]
        for name, run, rerun, when in runs:
            try:
                result = run(case)
                if isinstance(result, str):
                    raise AdapterError(result)
                j = judge(case, result, who=name, truth=truth, bounds=bounds, rerun=rerun, rerun_when=when)
            except (Unsupported, AdapterError) as exc:
                line["who"][name] = {"verdict": "error", "message": str(exc)[:300]}
                continue
            margins = [r["margin"] for r in j.rows                     # notes excused: not margins
                       if r["class"] in ("pass", "bug", "precision") and math.isfinite(r.get("allowed", math.nan))]
            line["who"][name] = {"verdict": j.verdict(), "classes": j.classes(),
                                 "min_margin": min(margins, default=math.inf),
                                 "max_z": max((SAFETY / m for m in margins if m > 0), default=0.0),
                                 "failing": [f"{r['layer']}.{r['tensor']}" for r in j.failures]
                                 + [f["kind"] for f in j.findings if f["class"] in ("bug", "precision")]}


def _worker_init(zoo):
    from bpcheck.run.pool import set_single_thread
    set_single_thread()
    _WORKER["named"] = candidates(zoo)


def _worker_run(text):
    cases = [case_from_json(doc) for doc in json.loads(text)]
    return json.dumps(jsonable(judge_chunk(cases, _WORKER["named"])))


def run(n, *, zoo=ZOO, jobs=1, out=Path("reports"), seed=None, resume=False, progress=True, chunk=24):
    """Judge at least ``n`` cases; stream, aggregate and write; return the summary dict."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from bpcheck.cases.generate import Support, examples_for, generate_cases
    from bpcheck.cases.strategies import EDGE_SHARE
    from bpcheck.core.records import load_records
    from bpcheck.report.report import DEFAULT_SEED
    seed = DEFAULT_SEED if seed is None else seed
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "false_alarms.jsonl"
    cases = generate_cases(seed, examples_for(n * (1 - EDGE_SHARE), 1, len(Support().cells())))  # plain + edge >= n
    done = {r["case"]: r for r in load_records(path, repair=True)} if resume else {}
    if not resume:
        path.write_text("")
    todo = [c for c in cases if c.id not in done]
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    start, last = time.perf_counter(), 0.0
    with open(path, "a", encoding="utf-8") as stream:
        def emit(lines):
            nonlocal last
            for line in lines:
                stream.write(json.dumps(jsonable(line), separators=(",", ":")) + "\n")
                done[line["case"]] = line
            stream.flush()
            if progress and time.perf_counter() - last > 10:
                last = time.perf_counter()
                rate = (len(done)) / max(last - start, 1e-9)
                print(f"bpcheck: {len(done)}/{len(cases)} cases, {rate:.1f} cases/s", flush=True)
        if jobs == 1:
            _worker_init(zoo)
            for c in chunks:
                emit(judge_chunk(c, _WORKER["named"]))
        else:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_init, initargs=(zoo,)) as pool:
                pending, queue = set(), list(reversed(chunks))
                while queue or pending:
                    while queue and len(pending) < 2 * jobs:
                        pending.add(pool.submit(_worker_run, json.dumps([case_to_json(c) for c in queue.pop()])))
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        emit(json.loads(future.result()))
    lines = [done[c.id] for c in cases if c.id in done]
    summary = aggregate(lines)
    summary["meta"] = {"seed": seed, "requested": n, "cases": len(lines), "jobs": jobs,
                       "wall_seconds": round(time.perf_counter() - start, 1),
                       "command": f"bpcheck selftest --false-alarms {n}"}
    _save_alarms(cases, lines, out / "false_alarms")
    (out / "false_alarms.json").write_text(json.dumps(jsonable(summary), indent=1) + "\n")
    (out / "false_alarms.md").write_text(markdown(summary))
    return summary


def aggregate(lines):
    """Per (implementation, dtype): cases, false alarms and their ids, notes, margins, worst z."""
    by = defaultdict(list)
    for line in lines:
        for name, v in line["who"].items():
            by[(name, line["dtype"])].append((line, v))
    table = []
    for (name, dtype), entries in sorted(by.items()):
        margins = np.asarray([v.get("min_margin", math.inf) for _, v in entries
                              if v["verdict"] != "error"], dtype=float)
        notes = Counter()
        for _, v in entries:
            notes.update({k: n for k, n in v.get("classes", {}).items() if k in NOTES})
        alarms = [line["case"] for line, v in entries if v["verdict"] == "fail"]
        finite = margins[np.isfinite(margins)]
        table.append({"who": name, "dtype": dtype, "cases": len(entries),
                      "errors": sum(v["verdict"] == "error" for _, v in entries),
                      "false_alarms": len(alarms), "alarm_cases": alarms[:20], "notes": dict(notes),
                      "min_margin": float(finite.min()) if finite.size else math.inf,
                      "margin_p001": float(np.quantile(finite, 0.001)) if finite.size else math.inf,
                      "margin_p01": float(np.quantile(finite, 0.01)) if finite.size else math.inf,
                      "margin_median": float(np.median(finite)) if finite.size else math.inf,
                      "max_z": max((v.get("max_z", 0.0) for _, v in entries), default=0.0)})
    families = Counter(line["family"] for line in lines)
    harness = [line["case"] for line in lines if "harness_error" in line]
    return {"table": table, "families": dict(families),
            "harness_errors": len(harness), "harness_error_cases": harness[:20],
            "cases_with_unbounded_tensors": sum(bool(line.get("unbounded")) for line in lines),
            "total_false_alarms": sum(t["false_alarms"] for t in table),
            "total_judgements": sum(t["cases"] for t in table)}


def markdown(summary):
    m = summary["meta"]
    lines = ["# bpcheck false-alarm campaign", "",
             f"`{m['command']}`: {m['cases']} cases (seed {m['seed']}; families "
             + ", ".join(f"{k} {v}" for k, v in sorted(summary["families"].items(), key=lambda kv: -kv[1]))
             + f"), {summary['total_judgements']} verdicts, {m['wall_seconds']} s with {m['jobs']} jobs.", "",
             f"**False alarms: {summary['total_false_alarms']}. Harness errors: {summary['harness_errors']}.** "
             f"Cases where some tensor's bound is unbounded (the first-order model breaks down: inf x 0 at an "
             f"overflow or underflow; that tensor is not checked): {summary['cases_with_unbounded_tensors']}. "
             "A harness error is bpcheck failing on a case itself. A false alarm is a verdict FAIL (a row or "
             "finding of class bug or precision) for an implementation known to be correct. Margin = "
             "tolerance ÷ error of a tensor (the case's smallest is taken); max z = the largest "
             "error ÷ (u ‖s‖) over every tensor of every case, against the safety factor of 4.", "",
             "| implementation | dtype | cases | false alarms | errors | smallest margin | margin p0.1% | "
             "margin p1% | median margin | max z | notes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in summary["table"]:
        notes = ", ".join(f"{k} {v}" for k, v in sorted(t["notes"].items())) or "—"
        lines.append(f"| {t['who']} | {t['dtype']} | {t['cases']} | {t['false_alarms']} | {t['errors']} | "
                     f"{t['min_margin']:.3g} | {t['margin_p001']:.3g} | {t['margin_p01']:.3g} | "
                     f"{t['margin_median']:.3g} | {t['max_z']:.3g} | {notes} |")
    alarms = [(t["who"], c) for t in summary["table"] for c in t["alarm_cases"]]
    if alarms:
        lines += ["", "Cases with a false alarm (saved in false_alarms/ for `bpcheck check`):", ""]
        lines += [f"- {who}: {case}" for who, case in alarms]
    if summary["harness_errors"]:
        lines += ["", "Cases bpcheck itself failed on (saved in false_alarms/):", ""]
        lines += [f"- {case}" for case in summary["harness_error_cases"]]
    return "\n".join(lines) + "\n"


def _save_alarms(cases, lines, directory):
    from bpcheck.core.spec import save_case
    by_id = {c.id: c for c in cases}
    for line in lines:
        if "harness_error" in line or any(v["verdict"] == "fail" for v in line["who"].values()):
            save_case(by_id[line["case"]], directory)


def campaign_command_body(n, *, zoo, jobs, out, seed, resume=False):
    """What ``bpcheck selftest --false-alarms N`` does; returns the exit code (1 on any false alarm)."""
    summary = run(n, zoo=zoo, jobs=jobs, out=out, seed=seed, resume=resume)
    print(markdown(summary))
    return 1 if summary["total_false_alarms"] or summary["harness_errors"] else 0
