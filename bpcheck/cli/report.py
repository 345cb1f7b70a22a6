"""``bpcheck report``: the dense report (``bpcheck.report.report``), then the op report
(``bpcheck.opcheck.report``) and the graph report (``bpcheck.opcheck.graph_report``)."""
import os
import sys
import time
from pathlib import Path

import click

from bpcheck.cases.strategies import EDGE_SHARE
from bpcheck.cli.options import choices, default_jobs, parse_shard, shard_of
from bpcheck.core.spec import ACTIVATIONS, DTYPES, LOSSES
from bpcheck.report.report import DEFAULT_EXAMPLES, DEFAULT_SEED, ORACLE_NAMES, write_reports

__all__ = ["report_command"]


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--examples", type=click.IntRange(1), default=DEFAULT_EXAMPLES, show_default=True,
              help="Cases per loss × activation × dtype cell.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Hypothesis seed.")
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Output directory.")
@click.option("--losses", default="all", show_default=True, callback=choices(LOSSES),
              help="Comma-separated losses.")
@click.option("--activations", default="all", show_default=True, callback=choices(ACTIVATIONS),
              help="Comma-separated activations.")
@click.option("--dtypes", default="all", show_default=True, callback=choices(DTYPES),
              help="Comma-separated dtypes.")
@click.option("--max-depth", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Networks have 1..max-depth layers.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=default_jobs, show_default="usable CPUs, ≤ 8",
              help="Worker processes.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/cases.jsonl.")
@click.option("--edge-share", type=click.FloatRange(0, 1), default=None,
              help=f"Least share of cases from the edge families; the whole edge grid is drawn every "
                   f"round, more rounds where this asks for more, 0 draws none [default: {EDGE_SHARE}].")
@click.option("--candidate", default="reference", show_default=True,
              help="Implementation to report on: reference, module:function or path.py:function.")
@click.option("--in-process", is_flag=True, help="Call a non-builtin candidate in bpcheck's own processes.")
@click.option("--shard", default=None, callback=lambda ctx, param, value: parse_shard(value), metavar="I/N",
              help="Judge only shard I of N (1 <= I <= N: every N-th case from the I-th), for CI matrices; "
                   "`bpcheck merge` joins the shards into the unsharded run's report.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the cases on a Dask distributed scheduler (tcp://host:port; pip install 'bpcheck[dask]').")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress.")
@click.option("--ops/--no-ops", "with_ops", default=True, show_default=True,
              help="Also the op report (OUT/ops.json, ops.md): every layer of the op catalog.")
@click.option("--ops-only", is_flag=True, help="Only the op report (and the graph report).")
@click.option("--graphs/--no-graphs", "with_graphs", default=True, show_default=True,
              help="With the op report, also the graph report (OUT/graphs.json, graphs.md, graphs.html): every "
                   "architecture x candidate x dtype checked as a whole network.")
def report_command(examples, seed, out, losses, activations, dtypes, max_depth, jobs, resume, edge_share,
                   candidate, in_process, shard, scheduler, progress, with_ops, ops_only, with_graphs):
    """Measure the candidate, torch and jax against the exact truth; write OUT/report.json,
    report.md, index.html and cases.jsonl, the op report OUT/ops.json, ops.md and the graph report
    OUT/graphs.json, graphs.md, graphs.html. Exit 1 if the candidate (or, in the op report, any
    implementation; in the graph report, any candidate) has a failing row."""
    if ops_only:
        code = _op_report(out, jobs)
        sys.exit(max(code, _graph_report(out, jobs, seed) if with_graphs else 0))
    from bpcheck.cases import strategies as bst
    from bpcheck.cases.generate import generate_cases
    from bpcheck.core.records import CASES_FILE, load_records
    from bpcheck.report.render import fmt
    from bpcheck.run.pool import Candidate, run_cases, set_single_thread
    from bpcheck.run.signals import EXIT_INTERRUPTED, Interrupted, interruptible

    wall = time.perf_counter()
    set_single_thread()
    if os.getcwd() not in sys.path:  # `bpcheck` is a script: let module:function resolve as with `python -m`
        sys.path.insert(0, os.getcwd())
    edge_share = bst.EDGE_SHARE if edge_share is None else edge_share
    flags = {"examples": examples, "seed": seed, "out": str(out), "losses": losses,
             "activations": activations, "dtypes": dtypes, "max_depth": max_depth, "jobs": jobs,
             "resume": resume, "candidate": candidate, "edge_share": edge_share,
             "shard": list(shard) if shard else None}
    t0 = time.perf_counter()
    cases = shard_of(generate_cases(seed, examples, losses=losses, activations=activations, dtypes=dtypes,
                                    max_depth=max_depth, edge_share=edge_share), shard)
    t1 = time.perf_counter()
    click.echo(f"bpcheck report: {len(cases)} cases {f'(shard {shard[0]}/{shard[1]}) ' if shard else ''}"
               f"({examples} per cell of "
               f"{len(losses)} losses × {len(activations)} activations × {len(dtypes)} dtypes, "
               f"the edge grid on top), {jobs} job(s) -> {out}/", err=True)
    before = {r["case"] for r in load_records(Path(out) / CASES_FILE)} if resume else set()
    interrupted = False
    try:
        with interruptible():
            records = run_cases(cases, Candidate(candidate, isolate=not in_process), out_dir=out, jobs=jobs,
                                resume=resume, who=candidate, progress=progress, oracles=ORACLE_NAMES,
                                scheduler=scheduler)
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    except Interrupted as exc:
        records, interrupted = exc.records, True
    t2 = time.perf_counter()
    meta = {"seed": seed, "flags": flags, "command": " ".join(["bpcheck"] + sys.argv[1:]),
            "interrupted": interrupted,
            "timing": {"generate_seconds": round(t1 - t0, 3), "run_seconds": round(t2 - t1, 3),
                       "cases_run": sum(1 for r in records if r["case"] not in before),
                       "wall_seconds": round(time.perf_counter() - wall, 3)}}
    report = write_reports(records, out, meta=meta)
    wall = time.perf_counter() - wall
    for g in report["groups"]["summary"]:  # noqa: B007
        click.echo(f"  {g['dtype']:8} {g['who']:10} median {fmt(g['median_u']):>6} u  p99 {fmt(g['p99_u']):>7} u  "
                   f"max {fmt(g['max_u']):>8} u  failures {g['failures']}/{g['n']}  "
                   + " ".join(f"{c} {n}" for c, n in g["classes"].items() if n and c != "pass"))
    c = report["counts"]
    click.echo(f"{c['cases']} cases in {wall:.1f} s ({c['unsupported']} unsupported, {c['error']} errors); "
               f"wrote {out}/report.json, report.md, index.html, cases.jsonl, heatmap.png")
    if interrupted:
        click.echo(f"interrupted after {len(records)} of {len(cases)} cases: the report holds those; "
                   "rerun with --resume to finish", err=True)
        sys.exit(EXIT_INTERRUPTED)
    failing = sum(1 for r in records if r["status"] == "ok" and any(row["class"] in ("bug", "precision")
                                                                  for row in r["rows"] + r.get("findings", [])))
    ops_code = _op_report(out, jobs) if with_ops and not shard else 0
    if with_ops and with_graphs and not shard:
        ops_code = max(ops_code, _graph_report(out, jobs, seed))
    if failing:
        click.echo(f"{candidate}: {failing} cases with a failing row (class bug or precision): exit 1", err=True)
        sys.exit(1)
    sys.exit(ops_code)


def _sub_report(title, build, what, wrote):
    """Run one of the op and graph reports, say what it did; 1 if anything fails, else 0. ``build() ->
    (cases, [a line per failing item])``; ``what`` = (the cases' kind, the failing items' kind)."""
    start = time.perf_counter()
    click.echo(f"bpcheck report: {title}", err=True)
    cases, failing = build()
    click.echo(f"{cases} {what[0]} cases in {time.perf_counter() - start:.1f} s, {len(failing)} failing "
               f"{what[1]}; wrote {wrote}")
    for line in failing:
        click.echo(f"  {line}", err=True)
    return 1 if failing else 0


def _op_report(out, jobs):
    """Write the op report into ``out`` (``jobs`` processes); 1 if any implementation fails a case, else 0."""
    from bpcheck.opcheck.report import op_report

    def build():
        groups = op_report(out, jobs=jobs, echo=lambda line: None)["groups"]
        return (sum(g["cases"] for g in groups),
                [f"{g['op']} {g['dtype']} {g['who']}: {g['failing']} failing" for g in groups if g["failing"]])
    return _sub_report("the op catalog (reference, second implementation, torch, jax)", build, ("op", "groups"),
                       f"{out}/ops.json, ops.md, ops.html, ops_cases.jsonl")


def _graph_report(out, jobs, seed):
    """Write the graph report into ``out`` (``jobs`` processes, the report's ``seed``); 1 if any run
    fails, else 0."""
    from bpcheck.opcheck.graph_report import graph_report

    def build():
        runs = graph_report(out, seed=seed, jobs=jobs, echo=lambda line: None)["runs"]
        return (sum(r["cases"] for r in runs),
                [f"{r['arch']} {r['candidate']} {r['dtype']}: {r['failures']} failing"
                 for r in runs if r["verdict"] == "fail"])
    return _sub_report("whole networks (reference, records, torch, jax per architecture)", build,
                       ("graph", "runs"), f"{out}/graphs.json, graphs.md, graphs.html")
