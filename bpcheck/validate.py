"""``bpcheck validate``: judge someone else's backprop; ``bpcheck export-vectors``.

    bpcheck validate path/to/mlp.py:backprop         # Python: the contract of DESIGN.md
    bpcheck validate mypkg.mlp:backprop
    bpcheck validate --exec "node examples/mlp.js"   # any language: docs/protocol.md

The same cases (``runner.generate_cases``), truth and derived tolerances as
``bpcheck report``; the same report files, for the target. When a case is
really wrong (class bug or precision), Hypothesis searches that case's loss,
dtype and activations for a failure of the same kind and shrinks it to the
smallest failing network (``bpcheck.search``; if it cannot reproduce it, the
run's own case is used), the chain rule is walked to the first wrong link
(``bpcheck.diagnose``), and the case is saved with a standalone
``repro_<id>.py`` (``bpcheck.repro``).

Exit code: 0 every check passed; 1 a real discrepancy; 2 a usage error, an
adapter error (the implementation raised, crashed, hung or replied with
garbage) or nothing checked at all. 2 wins over 1: a run that could not
judge every case is first a problem of wiring, and it is reported as such
(the discrepancies are still listed). Unsupported features are skipped and
listed, never counted as failures.
"""
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import click

from bpcheck.report import DEFAULT_SEED, _choices  # same flags, same cases as `bpcheck report`
from bpcheck.spec import ACTIVATIONS, DTYPES, LOSSES

REAL = ("bug", "precision")


def summarize(records):
    """Counts for the verdict: checked, failing records, skipped reasons, errors, row classes."""
    out = {"cases": len(records), "checked": 0, "failed": [], "unsupported": Counter(), "errors": [],
           "classes": Counter(), "oracle_disagreements": 0}
    for record in records:
        if record["status"] == "unsupported":
            out["unsupported"][record["message"]] += 1
        elif record["status"] == "error":
            out["errors"].append(record)
        else:
            out["checked"] += 1
            out["classes"].update(r["class"] for r in record["rows"] if r["class"] != "pass")
            out["oracle_disagreements"] += sum(r["class"] != "pass" for r in record.get("oracle_rows", []))
            if any(r["class"] in REAL for r in record["rows"]):
                out["failed"].append(record)
    out["exit_code"] = 2 if out["errors"] or not out["checked"] else (1 if out["failed"] else 0)
    return out


def _size(record):
    spec = record["spec"]
    return (len(spec["layers"]), sum(l["units"] for l in spec["layers"]) + spec["input_dim"], record["batch"])


def shrink_failure(record, case, backend, *, seed, budget, shrink=True):
    """The smallest failing case near ``record``: Hypothesis over its loss, dtype and activations."""
    from bpcheck import strategies as bst
    from bpcheck.diagnose import first_divergence
    from bpcheck.search import Outcome, cut_front, judge_case, search
    spec = record["spec"]
    used = {l["activation"] for l in spec["layers"]}
    strategy = bst.cases(bst.specs(activations=[a for a in ACTIVATIONS if a in used], losses=[spec["loss"]],
                                   dtypes=[spec["dtype"]], max_depth=len(spec["layers"])))
    first = first_divergence(record["rows"])
    outcome = Outcome()
    if shrink:
        outcome = search(backend, strategy, max_examples=50, seed=seed, budget=budget, errors_fail=False,
                         target=first["tensor"])
    if outcome.judged is None:           # not reproduced (or not asked): the run's own case
        judged = judge_case(case, backend)
        outcome.judged = cut_front(judged, backend) if shrink and judged.failures else judged
        outcome.note = "not shrunk: the search did not reproduce the failure" if shrink else "not shrunk"
    return outcome


def run_validate(target=None, exec_command=None, *, examples=1, seed=DEFAULT_SEED, dtypes=None, losses=None,
                 activations=None, max_depth=6, timeout=10.0, jobs=1, shrink=True, shrink_budget=60.0,
                 out_dir="bpcheck-out/validate", progress=True):
    """Run the whole validation; return the verdict (a JSON-able dict with ``exit_code``)."""
    from bpcheck.backends import AdapterError
    from bpcheck.runner import generate_cases, run_cases
    out_dir = Path(out_dir)
    options = {"examples": examples, "seed": seed, "dtypes": dtypes or list(DTYPES),
               "losses": losses or list(LOSSES), "activations": activations or list(ACTIVATIONS),
               "max_depth": max_depth}
    verdict = {"target": exec_command or target, "exec": bool(exec_command), "options": options,
               "out": str(out_dir)}
    try:
        backend, candidate = _backend(target, exec_command, timeout, jobs)
    except (ValueError, AdapterError) as exc:
        return {**verdict, "exit_code": 2, "error": str(exc)}
    try:
        clock = [time.perf_counter()]
        cases = generate_cases(seed, examples, losses=options["losses"], activations=options["activations"],
                               dtypes=options["dtypes"], max_depth=max_depth)
        clock.append(time.perf_counter())
        records = run_cases(cases, candidate, out_dir=out_dir, jobs=jobs, who=backend.name, progress=progress)
        clock.append(time.perf_counter())
        summary = summarize(records)
        verdict.update(name=backend.name, **_verdict_counts(summary))
        sections = []
        if summary["failed"]:
            from bpcheck.verdict import diagnosis_section
            first = min(summary["failed"], key=_size)
            case = next(c for c in cases if c.id == first["case"])
            outcome = shrink_failure(first, case, backend, seed=seed, budget=shrink_budget, shrink=shrink)
            found, section = diagnosis_section(outcome, first, backend, out_dir, target=target,
                                               exec_command=exec_command)
            verdict["shrunk"] = found
            sections.append(section)
        clock.append(time.perf_counter())
        verdict["timing"] = {"generate_seconds": round(clock[1] - clock[0], 3),
                             "run_seconds": round(clock[2] - clock[1], 3),
                             "diagnose_seconds": round(clock[3] - clock[2], 3)}
        verdict["reports"] = _reports(records, out_dir, verdict, sections, verdict["timing"])
    finally:
        if hasattr(backend, "close"):
            backend.close()
    return verdict


def _backend(target, exec_command, timeout, jobs):
    """(backend, what run_cases gets): the backend itself, or the target string for workers."""
    from bpcheck.backends import load_target
    if exec_command:
        from bpcheck.protocol import SubprocessBackend
        backend = SubprocessBackend(exec_command, timeout=timeout)
        backend.start()
        return backend, backend
    if os.getcwd() not in sys.path:  # `bpcheck` is a script: resolve module:function like `python -m`
        sys.path.insert(0, os.getcwd())
    backend = load_target(target)
    return backend, (target if jobs > 1 else backend)


def _verdict_counts(summary):
    return {"exit_code": summary["exit_code"], "cases": summary["cases"], "checked": summary["checked"],
            "failed": len(summary["failed"]), "failed_cases": [r["case"] for r in summary["failed"]],
            "skipped": sum(summary["unsupported"].values()), "unsupported": dict(summary["unsupported"]),
            "errors": [{"case": r["case"], "stage": r.get("stage"), "message": r["message"]}
                       for r in summary["errors"]],
            "classes": dict(summary["classes"]), "oracle_disagreements": summary["oracle_disagreements"]}


def _reports(records, out_dir, verdict, sections, timing):
    from bpcheck.runner import write_reports
    flags = {**verdict["options"], "target": verdict["target"], "exec": verdict["exec"],
             "out": verdict["out"], "candidate": verdict.get("name")}
    meta = {"seed": verdict["options"]["seed"], "flags": flags, "timing": timing,
            "command": " ".join(["bpcheck validate"] + sys.argv[2:]) if sys.argv[1:2] == ["validate"]
            else f"bpcheck.validate.run_validate({verdict['target']!r})"}
    write_reports(records, out_dir, meta=meta, extra_sections=sections)
    return {name: str(out_dir / name) for name in ("index.html", "report.md", "report.json")}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", required=False)
@click.option("--exec", "exec_command", metavar="COMMAND",
              help='A program speaking the bpcheck/1 protocol (docs/protocol.md), e.g. "node mlp.js".')
@click.option("--examples", default=1, show_default=True, type=click.IntRange(min=1),
              help="Cases per loss × activation × dtype cell.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Hypothesis seed.")
@click.option("--dtypes", callback=_choices(DTYPES), help="Comma-separated subset (default: all).")
@click.option("--losses", callback=_choices(LOSSES), help="Comma-separated subset (default: all).")
@click.option("--activations", callback=_choices(ACTIVATIONS),
              help="Comma-separated subset (default: all).")
@click.option("--max-depth", default=6, show_default=True, type=click.IntRange(1, 64))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds an --exec program may take per reply (and for its hello line).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes (Python targets; --exec runs one program).")
@click.option("--shrink-budget", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds Hypothesis may spend shrinking a failing case.")
@click.option("--no-shrink", is_flag=True, help="Diagnose the smallest failing case as generated.")
@click.option("--out", "out_dir", default="bpcheck-out/validate", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where reports and the repro go.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON (stdout) instead of text.")
def validate_command(target, exec_command, examples, seed, dtypes, losses, activations, max_depth, timeout,
                     jobs, shrink_budget, no_shrink, out_dir, as_json):
    """Check TARGET (module:function or path/to/file.py:function) or an --exec program.

    Exit code 0: every check passed; 1: a real discrepancy (class bug or
    precision); 2: usage or adapter error, or nothing could be checked.
    """
    if bool(target) == bool(exec_command):
        raise click.UsageError("give exactly one of TARGET or --exec COMMAND")
    if exec_command and jobs > 1:
        click.echo("bpcheck: --jobs applies to Python targets; running the --exec program once", err=True)
        jobs = 1
    if jobs == 1:
        from bpcheck.runner import set_single_thread
        set_single_thread()               # as bpcheck report: results independent of thread counts
    verdict = run_validate(target, exec_command, examples=examples, seed=seed, dtypes=dtypes, losses=losses,
                           activations=activations, max_depth=max_depth, timeout=timeout, jobs=jobs,
                           shrink=not no_shrink, shrink_budget=shrink_budget, out_dir=out_dir)
    if as_json:
        from bpcheck.runner import jsonable   # non-finite floats as "inf"/"nan": strict JSON
        click.echo(json.dumps(jsonable(verdict), indent=2, allow_nan=False))
    else:
        from bpcheck.verdict import verdict_text
        click.echo(verdict_text(verdict))
    sys.exit(verdict["exit_code"])


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dtypes", callback=_choices(DTYPES), help="Comma-separated subset (default: all).")
@click.option("--losses", callback=_choices(LOSSES), help="Comma-separated subset (default: all).")
@click.option("--activations", callback=_choices(ACTIVATIONS),
              help="Comma-separated subset (default: all).")
def export_vectors_command(directory, dtypes, losses, activations):
    """Write the golden vectors (fixed, versioned cases with float64 truth) into DIRECTORY."""
    from bpcheck.vectors import VERSION, export
    count = len(dtypes) * len(losses) * len(activations)
    done = []

    def progress(case):
        done.append(case.id)
        if len(done) % 10 == 0 or len(done) == count:
            click.echo(f"bpcheck: {len(done)}/{count} vectors", err=True)
    manifest = export(directory, losses=losses, activations=activations, dtypes=dtypes, progress=progress)
    click.echo(f"wrote {manifest['count']} golden vectors (version {VERSION}) and manifest.json "
               f"to {directory}")
