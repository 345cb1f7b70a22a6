"""``bpcheck validate``: judge someone else's backprop; ``bpcheck export-vectors``.

    bpcheck validate path/to/mlp.py:backprop         # Python: the contract of README, "Validate"
    bpcheck validate mypkg.mlp:backprop
    bpcheck validate --exec "node examples/mlp.js"   # any language: docs/protocol.md

First the implementation is asked what it supports (``bpcheck.run.support``); the
run draws only supported cells (``bpcheck.cases.generate``: plain cases per cell and
the edge families), judged by ``bpcheck.run.engine`` in worker processes
(``bpcheck.run.pool``), the implementation itself isolated in a process of its own
unless ``--in-process``; declined combinations are topped up until
``--min-cases`` are checked. When a case is really wrong (class bug or
precision), Hypothesis searches that case's loss, dtype, activations and
family for a failure of the same kind and shrinks it (``bpcheck.diagnose.search``), the
chain rule is walked to the first wrong link (``bpcheck.diagnose.diagnose``), the lines
only failing cases run are named (``bpcheck.diagnose.explain``), and the case is saved
with a standalone ``repro_<id>.py`` (``bpcheck.diagnose.repro``).

Exit code: 0 every check passed on at least --min-cases checked cases; 1 a real
discrepancy; 2 a usage error, an adapter error (the implementation raised,
crashed, hung or replied with garbage) or too little checked -- 2 wins over 1;
130 interrupted (the report holds what was judged; --resume continues).
"""
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import click

from bpcheck.cases.generate import coverage as edge_coverage
from bpcheck.cases.generate import examples_for, generate_cases
from bpcheck.cases.strategies import EDGE_SHARE
from bpcheck.core.spec import ACTIVATIONS, DTYPES, LOSSES
from bpcheck.judge.classify import NOTES, REAL
from bpcheck.cli.options import choices  # same flags, same cases as `bpcheck report`
from bpcheck.report.report import DEFAULT_SEED
from bpcheck.run.signals import EXIT_INTERRUPTED, Interrupted

MIN_CASES = 100       # a PASS needs at least this many checked cases (--min-cases)
TOP_UP_ROUNDS = 3     # rounds of extra draws when declined combinations leave too few checked,
TOP_UP_LIMIT = 4      # drawing at most this many times --min-cases in all


def summarize(records, *, strict=False, min_cases=0):
    """Counts for the verdict: checked, failing records, skipped reasons, errors, classes.

    Exit code: 2 if a case could not be judged (the implementation raised, crashed, hung or
    replied with garbage) or fewer than ``min_cases`` were checked; else 1 if a case has a row
    or finding of class bug or precision (any note too, with ``strict``); else 0.
    """
    bad = REAL + (NOTES if strict else ())
    out = {"cases": len(records), "checked": 0, "failed": [], "unsupported": Counter(), "errors": [],
           "classes": Counter(), "oracle_findings": 0, "families": Counter()}
    for record in records:
        if record["status"] == "unsupported":
            out["unsupported"][record["message"]] += 1
        elif record["status"] == "error":
            out["errors"].append(record)
        else:
            out["checked"] += 1
            out["families"][record.get("meta", {}).get("family", "plain")] += 1
            items = record["rows"] + record.get("findings", [])
            out["classes"].update(r["class"] for r in items if r["class"] != "pass")
            out["oracle_findings"] += sum(r["class"] != "pass" for r in record.get("oracle_rows", []))
            if any(r["class"] in bad for r in items):
                out["failed"].append(record)
    out["too_few"] = out["checked"] < min_cases
    out["exit_code"] = 2 if out["errors"] or not out["checked"] or out["too_few"] else (1 if out["failed"] else 0)
    return out


def _passing_like(failed, records, cases, n=20):
    """Up to ``n`` cases of the run that passed, those with the failing case's loss and dtype first."""
    by_id = {c.id: c for c in cases}
    ok = [r for r in records if r["status"] == "ok" and not any(
        x["class"] in REAL for x in r["rows"] + r["findings"]) and r["case"] in by_id]
    same = lambda r: (r["spec"]["loss"], r["spec"]["dtype"]) == (failed["spec"]["loss"], failed["spec"]["dtype"])  # noqa: E731
    ok.sort(key=lambda r: not same(r))
    return [by_id[r["case"]] for r in ok[:n]]


def _severity_then_size(record):
    bug = any(r["class"] == "bug" for r in record["rows"] + record["findings"])
    return (0 if bug else 1,) + _size(record)


def _size(record):
    spec = record["spec"]
    return (len(spec["layers"]), sum(l["units"] for l in spec["layers"]) + spec["input_dim"], record["batch"])


def shrink_failure(record, case, backend, *, seed, budget, shrink=True):
    """The smallest failing case near ``record``: Hypothesis over its loss, dtype, activations and family."""
    from bpcheck.cases import strategies as bst
    from bpcheck.diagnose.search import Outcome, cut_front, judge_case, search
    from bpcheck.judge.judge import first_divergence
    spec = record["spec"]
    used = [a for a in ACTIVATIONS if a in {l["activation"] for l in spec["layers"]}]
    family = record.get("meta", {}).get("family", "plain")
    families = ("plain",) if family == "plain" else (family,)
    strategy = bst.cases(activations=used, losses=[spec["loss"]], dtypes=[spec["dtype"]],
                         max_depth=len(spec["layers"]), families=families, arrays="seeded")
    first = first_divergence(record["rows"])
    target = (f"{first['tensor']}:{first['class']}" if first is not None and first["class"] in REAL
              else next((f["kind"] for f in record["findings"] if f["class"] in REAL), None))
    outcome = Outcome()
    if shrink:
        outcome = search(backend, strategy, max_examples=50, seed=seed, budget=budget, errors_fail=False,
                         target=target)
    if outcome.judged is None:           # not reproduced (or not asked): the run's own case
        judged = judge_case(case, backend)
        outcome.judged = cut_front(judged, backend) if shrink and judged.failures else judged
        outcome.note = "not shrunk: the search did not reproduce the failure" if shrink else "not shrunk"
    return outcome


def build_candidate(target, exec_command, *, timeout, in_process, memory_mb):
    """The ``Candidate`` description (for worker processes) and a backend built here (probe, shrink)."""
    import shlex

    from bpcheck.run.pool import Candidate
    if exec_command:
        candidate = Candidate(argv=tuple(shlex.split(exec_command)), timeout=timeout)
    else:
        if os.getcwd() not in sys.path:  # `bpcheck` is a script: resolve module:function like `python -m`
            sys.path.insert(0, os.getcwd())
        from bpcheck.run.backends import load_function
        load_function(target)            # a missing file or function is a usage error, said once
        candidate = Candidate(target=target, isolate=not in_process, timeout=timeout, memory_mb=memory_mb)
    backend = candidate.build()
    if hasattr(backend, "start"):
        backend.start()
    return candidate, backend


def run_validate(target=None, exec_command=None, *, examples=1, seed=DEFAULT_SEED, dtypes=None, losses=None,
                 activations=None, max_depth=6, timeout=10.0, jobs=1, shrink=True, shrink_budget=60.0,
                 out_dir="bpcheck-out/validate", progress=True, edge_share=None, min_cases=MIN_CASES,
                 strict=False, in_process=False, memory_mb=4096, resume=False, max_params=None):
    """Run the whole validation; return the verdict (a JSON-able dict with ``exit_code``).
    ``max_params``: draw only networks of at most that many parameters (also when the
    implementation declines larger ones: the smaller of the two)."""
    from bpcheck.cases import strategies as bst
    from bpcheck.run.backends import AdapterError
    from bpcheck.run.support import Hung, probe, probe_size
    out_dir = Path(out_dir)
    edge_share = bst.EDGE_SHARE if edge_share is None else edge_share
    options = {"examples": examples, "seed": seed, "dtypes": dtypes or list(DTYPES),
               "losses": losses or list(LOSSES), "activations": activations or list(ACTIVATIONS),
               "max_depth": max_depth, "edge_share": edge_share, "min_cases": min_cases, "strict": strict,
               "jobs": jobs, "isolated": not in_process and not exec_command, "timeout": timeout,
               "max_params": max_params}
    verdict = {"target": exec_command or target, "exec": bool(exec_command), "options": options,
               "out": str(out_dir)}
    try:
        candidate, backend = build_candidate(target, exec_command, timeout=timeout, in_process=in_process,
                                             memory_mb=memory_mb)
    except (ValueError, AdapterError) as exc:
        return {**verdict, "exit_code": 2, "error": str(exc)}
    try:
        clock = [time.perf_counter()]
        try:
            support = probe(backend, losses=options["losses"], dtypes=options["dtypes"])   # every activation:
            # a loss's required last activation counts even where --activations leaves it out
            limit, why = probe_size(backend, support, max_depth)
        except Hung as exc:                  # one timeout, not one per probe
            return {**verdict, "exit_code": 2, "error": str(exc)}
        if limit is not None:
            support.declined[f"networks of more than {limit} parameters"] = why
        limits = [p for p in (max_params, limit) if p is not None]
        options["max_params"] = min(limits) if limits else None
        cells = support.cells(options["losses"], options["activations"], options["dtypes"], max_depth)
        per_cell = examples_for(min_cases, examples, len(cells))
        grid = dict(losses=options["losses"], activations=options["activations"], dtypes=options["dtypes"],
                    max_depth=max_depth, edge_share=edge_share, support=support,
                    max_params=options["max_params"])
        cases = generate_cases(seed, per_cell, **grid)
        clock.append(time.perf_counter())
        first_failure = []

        def observe(record):                 # when the first failing case came back
            if not first_failure and any(r["class"] in REAL for r in record["rows"] + record["findings"]):
                first_failure.append(time.perf_counter() - clock[0])
        run = dict(out_dir=out_dir, jobs=jobs, who=backend.name, progress=progress,
                   backend=backend, observe=observe)
        try:
            records = _run_all(cases, candidate, run, grid, seed=seed, per_cell=per_cell, cells=cells,
                               min_cases=min_cases, resume=resume)
        except Interrupted as exc:
            records, verdict["interrupted"] = exc.records, True
        clock.append(time.perf_counter())
        summary = summarize(records, strict=strict, min_cases=min_cases)
        verdict.update(name=backend.name, **_verdict_counts(summary), support=_support(support, cells),
                       per_cell=per_cell, coverage=edge_coverage(records))
        if verdict.get("interrupted"):
            verdict["exit_code"] = EXIT_INTERRUPTED
        sections = []
        if summary["failed"] and not verdict.get("interrupted"):
            from bpcheck.report.verdict import diagnosis_section
            first = min(summary["failed"], key=_severity_then_size)       # a bug before a precision loss
            case = next(c for c in cases if c.id == first["case"])
            outcome = shrink_failure(first, case, backend, seed=seed, budget=shrink_budget, shrink=shrink)
            passing = _passing_like(first, records, cases)
            found, section = diagnosis_section(outcome, first, backend, out_dir, target=target,
                                               exec_command=exec_command, passing=passing)
            verdict["shrunk"] = found
            sections.append(section)
        clock.append(time.perf_counter())
        verdict["timing"] = {"generate_seconds": round(clock[1] - clock[0], 3),
                             "run_seconds": round(clock[2] - clock[1], 3),
                             "diagnose_seconds": round(clock[3] - clock[2], 3),
                             "cases_per_second": round(len(records) / max(clock[2] - clock[1], 1e-9), 2),
                             "first_failure_seconds": round(first_failure[0], 3) if first_failure else None}
        verdict["reports"] = _reports(records, out_dir, verdict, sections, verdict["timing"])
    finally:
        if hasattr(backend, "close"):
            backend.close()
    return verdict


def _run_all(cases, candidate, run, grid, *, seed, per_cell, cells, min_cases, resume):
    """Judge ``cases`` (appending to ``cases``), then top up while declined draws leave fewer than
    ``min_cases`` checked: deterministic, so ``resume`` re-derives the same sequence."""
    from bpcheck.run.pool import run_cases
    records = run_cases(cases, candidate, resume=resume, **run)
    drawn = per_cell
    for _ in range(TOP_UP_ROUNDS):           # declined combinations: draw more, within support
        checked = sum(r["status"] == "ok" for r in records)
        if checked >= min_cases or not cells or not any(r["status"] == "unsupported" for r in records):
            break
        accepted = max(checked / len(records), 0.05)         # the share of draws it takes
        room = TOP_UP_LIMIT * min_cases - len(cases)
        per_example = len(cells) / (1 - grid["edge_share"])                 # plain and edge cases per example
        more = min(examples_for(math.ceil((min_cases - checked) / accepted), 1, len(cells)),
                   int(room // per_example))
        if more < 1:
            break
        cases += generate_cases(seed, more, start=drawn, **grid)
        drawn += more
        records = run_cases(cases, candidate, resume=True, **run)
    return records


def _support(support, cells):
    return {"activations": list(support.activations), "losses": list(support.losses),
            "dtypes": list(support.dtypes), "declined": dict(support.declined), "cells": len(cells)}


def _verdict_counts(summary):
    return {"exit_code": summary["exit_code"], "cases": summary["cases"], "checked": summary["checked"],
            "too_few": summary["too_few"], "failed": len(summary["failed"]),
            "failed_cases": [r["case"] for r in summary["failed"]],
            "skipped": sum(summary["unsupported"].values()), "unsupported": dict(summary["unsupported"]),
            "errors": [{"case": r["case"], "stage": r.get("stage"), "message": r["message"]}
                       for r in summary["errors"]],
            "classes": dict(summary["classes"]), "families": dict(summary["families"]),
            "oracle_findings": summary["oracle_findings"]}


def _reports(records, out_dir, verdict, sections, timing):
    from bpcheck.report.report import write_reports
    flags = {**verdict["options"], "target": verdict["target"], "exec": verdict["exec"],
             "out": verdict["out"], "candidate": verdict.get("name")}
    meta = {"seed": verdict["options"]["seed"], "flags": flags, "timing": timing, "verdict": verdict,
            "command": " ".join(["bpcheck validate"] + sys.argv[2:]) if sys.argv[1:2] == ["validate"]
            else f"bpcheck.cli.validate.run_validate({verdict['target']!r})"}
    write_reports(records, out_dir, meta=meta, extra_sections=sections)
    return {name: str(out_dir / name) for name in ("index.html", "report.md", "report.json")}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", required=False)
@click.option("--exec", "exec_command", metavar="COMMAND",
              help='A program speaking the bpcheck/1 protocol (docs/protocol.md), e.g. "node mlp.js".')
@click.option("--examples", default=1, show_default=True, type=click.IntRange(min=1),
              help="Checked cases per supported loss × activation × dtype cell (more if --min-cases needs).")
@click.option("--min-cases", default=MIN_CASES, show_default=True, type=click.IntRange(min=0),
              help="A PASS needs at least this many checked cases.")
@click.option("--edge-share", default=None, type=click.FloatRange(0, 1),
              help=f"Least share of cases from the edge families; the whole edge grid is drawn every "
                   f"round, more rounds where this asks for more, 0 draws none [default: {EDGE_SHARE}].")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Seed of the case generator.")
@click.option("--dtypes", callback=choices(DTYPES), help="Comma-separated subset (default: all).")
@click.option("--losses", callback=choices(LOSSES), help="Comma-separated subset (default: all).")
@click.option("--activations", callback=choices(ACTIVATIONS),
              help="Comma-separated subset (default: all).")
@click.option("--max-depth", default=6, show_default=True, type=click.IntRange(1, 64))
@click.option("--max-params", default=None, type=click.IntRange(min=1),
              help="Draw only networks of at most this many parameters [default: what the "
                   "implementation takes, found by probing].")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds the implementation may take per case.")
@click.option("--jobs", "-j", default=None, type=click.IntRange(min=1),
              help="Worker processes [default: usable cores, ≤ 8].")
@click.option("--in-process", is_flag=True,
              help="Call a Python target in bpcheck's own processes: faster, but a crash or hang takes the run down.")
@click.option("--memory-mb", default=4096, show_default=True, type=click.IntRange(min=64),
              help="Address-space limit of the process running a Python target.")
@click.option("--strict", is_flag=True, help="Fail on notes too (kink, convention, dtype_limit).")
@click.option("--shrink-budget", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds Hypothesis may spend shrinking a failing case.")
@click.option("--no-shrink", is_flag=True, help="Diagnose the smallest failing case as generated.")
@click.option("--out", "out_dir", default="bpcheck-out/validate", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where reports and the repro go.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/cases.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON (stdout) instead of text.")
def validate_command(target, exec_command, examples, min_cases, edge_share, seed, dtypes, losses, activations,
                     max_depth, max_params, timeout, jobs, in_process, memory_mb, strict, shrink_budget, no_shrink,
                     out_dir, resume, as_json):
    """Check TARGET (module:function or path/to/file.py:function) or an --exec program.

    Exit code 0: every check passed on at least --min-cases checked cases; 1: a real
    discrepancy (class bug or precision); 2: usage or adapter error, or too little checked;
    130: interrupted (Ctrl-C, SIGTERM): the report holds what was judged, --resume continues.
    """
    from bpcheck.cli.options import default_jobs
    from bpcheck.run.signals import interruptible
    if bool(target) == bool(exec_command):
        raise click.UsageError("give exactly one of TARGET or --exec COMMAND")
    jobs = jobs or default_jobs()
    from bpcheck.run.pool import set_single_thread
    set_single_thread()                   # as bpcheck report: results independent of thread counts
    with interruptible():
        verdict = run_validate(target, exec_command, examples=examples, seed=seed, dtypes=dtypes, losses=losses,
                               activations=activations, max_depth=max_depth, timeout=timeout, jobs=jobs,
                               shrink=not no_shrink, shrink_budget=shrink_budget, out_dir=out_dir,
                               edge_share=edge_share, min_cases=min_cases, strict=strict, in_process=in_process,
                               memory_mb=memory_mb, resume=resume, max_params=max_params)
    if as_json:
        from bpcheck.core.records import jsonable   # non-finite floats as "inf"/"nan": strict JSON
        click.echo(json.dumps(jsonable(verdict), indent=2, allow_nan=False))
    else:
        from bpcheck.report.verdict import verdict_text
        click.echo(verdict_text(verdict))
    sys.exit(verdict["exit_code"])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dtypes", callback=choices(DTYPES), help="Comma-separated subset (default: all).")
@click.option("--losses", callback=choices(LOSSES), help="Comma-separated subset (default: all).")
@click.option("--activations", callback=choices(ACTIVATIONS),
              help="Comma-separated subset (default: all).")
def export_vectors_command(directory, dtypes, losses, activations):
    """Write the golden vectors (fixed, versioned cases with float64 truth) into DIRECTORY."""
    from bpcheck.proof.vectors import VERSION, export
    count = len(dtypes) * len(losses) * len(activations)
    done = []

    def progress(case):
        done.append(case.id)
        if len(done) % 10 == 0 or len(done) == count:
            click.echo(f"bpcheck: {len(done)}/{count} vectors", err=True)
    manifest = export(directory, losses=losses, activations=activations, dtypes=dtypes, progress=progress)
    click.echo(f"wrote {manifest['count']} golden vectors (version {VERSION}) and manifest.json "
               f"to {directory}")
