"""The graph report: every architecture x candidate x dtype checked as a whole network (reports/graphs.*).

For each architecture of ``bpcheck.ops.architectures`` and each candidate -- the hand-written reference
(``reference/networks.py``, the function named after the architecture), the records themselves
(``record_candidate()``) and each framework's built-ins composed (``framework_candidate``) -- and each
dtype, one ``bpcheck.opcheck.graph_check.check_graph`` run (``per_family`` cases of every family; JAX,
which compiles each primitive per shape and dtype at seconds a shape, ``jax_per_family`` cases of the
first family, ``plain``, only: its edge families are the op report's and tests/ops's). Per run: cases,
failing, the verdict, the worst margin (the least tolerance / error of any row of any case: below 1
fails, below 4 is near) and seconds; a failing run names its smallest failing case and first wrong node.
A framework run whose graph reaches a case a built-in documents it refuses (a record's ``limits``, e.g.
JAX's attention computes in float32) is not judged: its verdict is "declined", with the reason.

Written: ``graphs.json`` (machine-readable; JSON Schema ``bpcheck/schemas/graphs.schema.json``),
``graphs.md`` (the table) and ``graphs.html`` (the table and each architecture's graph as SVG
(``bpcheck.opcheck.graph_svg``), coloured by the first candidate's judgement -- the reference's: its
smallest failing case, or one plain case when it passes). ``validate_page`` is ``bpcheck graph
--html``'s page. Every string in the HTML is escaped; nothing external is loaded.
"""
import dataclasses
import html
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


from bpcheck.core.records import jsonable, printable
from bpcheck.ops import architectures
from bpcheck.opcheck.graph_candidates import (GraphCandidate, framework_candidate, framework_limit, python_candidate,
                                         record_candidate)
from bpcheck.ops.graph_cases import draw_graph_case
from bpcheck.opcheck.graph_check import check_graph, judge_graph_case
from bpcheck.opcheck.graph_svg import COLOURS, box_status, svg

__all__ = ["graph_report", "CANDIDATES", "candidate", "declined", "plain_judgement", "validate_page",
           "write_markdown", "write_html", "FORMAT"]

FORMAT = "bpcheck-graphs/1"
CANDIDATES = ("reference", "records", "torch", "jax")
DTYPES = ("float32", "float64")
FRAMEWORKS = ("torch", "jax")


# --- the candidates ----------------------------------------------------------------------------------

def candidate(spec, arch):
    """The ``GraphCandidate`` named by ``spec`` for architecture ``arch`` (a name), or None when the
    reference has no function for it. ``spec``: "reference", "records", "torch", "jax" or FILE.py:FN."""
    if spec == "reference":
        from reference import networks
        fn = getattr(networks, arch, None)
        return python_candidate(fn, "reference") if callable(fn) else None
    if spec == "records":
        return record_candidate()
    if spec in FRAMEWORKS:
        return framework_candidate(spec)
    from bpcheck.opcheck.candidates import load_function
    try:
        return python_candidate(load_function(spec), spec)
    except ValueError as exc:
        raise ValueError(f"{exc} (a candidate is reference, records, torch, jax or FILE.py:FUNCTION)") from None


def declined(arch, framework, dtype, seed=0):
    """The reason ``framework``'s built-ins refuse ``arch`` in ``dtype`` (``framework_limit`` on one plain
    case at the smallest size), or None."""
    arch = architectures.get(arch) if isinstance(arch, str) else arch
    return framework_limit(draw_graph_case(arch, "plain", dtype, seed * 1000, arch.sizes[0]), framework)


def _recording(inner):
    """(a GraphCandidate running ``inner`` and keeping each (case, result or exception), the log)."""
    log = []

    def run(case):
        try:
            result = inner.run(case)
        except Exception as exc:                            # judged as check_graph judges it, then replayed
            log.append((case, exc))
            raise
        log.append((case, result))
        return result
    return GraphCandidate(inner.name, run), log


def _replay(name, outcome):
    def run(case):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return GraphCandidate(name, run)


def _margin(rows):
    found = [float(r["margin"]) for r in rows if "margin" in r]
    found = [-math.inf if math.isnan(m) else m for m in found]
    if any(r.get("status") == "bug" and "margin" not in r for r in rows):
        found.append(0.0)                                    # a missing tensor, a raise: no margin at all
    return min(found, default=None)


def plain_judgement(arch, fn, dtype="float32", seed=0):
    """(case, rows, culprit) of one plain case of ``arch`` (drawn as ``check_graph``'s first) judged for
    ``fn`` (a callable or a GraphCandidate): what a passing check's drawing is coloured by."""
    arch = architectures.get(arch) if isinstance(arch, str) else arch
    fn = fn if isinstance(fn, GraphCandidate) else python_candidate(fn)
    case = draw_graph_case(arch, "plain", dtype, seed * 1000)
    rows, culprit, _ = judge_graph_case(case, fn)
    return case, rows, culprit


def _first(first):
    """The JSON of a GraphReport's shrunk failing case."""
    if first is None:
        return None
    culprit = first["culprit"] or {}
    return {"case": first["case"].describe(), "family": first["case"].family, "seed": first["case"].seed,
            "size": dict(first["case"].size), "node": culprit.get("node"), "tensor": culprit.get("tensor"),
            "words": culprit.get("words"), "wrong": [r["tensor"] for r in first["rows"] if r["status"] == "bug"]}


def _one(task):
    """A worker's unit: one architecture x one candidate, every dtype: (runs, the SVG or None)."""
    arch_name, spec, dtypes, per_family, seed, draw = task
    arch = architectures.get(arch_name)
    runs, drawing = [], None
    try:
        inner = candidate(spec, arch_name)
    except ValueError as exc:
        inner, problem = None, str(exc)
    else:
        problem = None if inner is not None else "no reference function for this architecture"
    for dtype in dtypes:
        base = {"arch": arch_name, "candidate": spec, "dtype": dtype, "per_family": per_family, "cases": 0,
                "failures": 0, "verdict": "none", "worst_margin": None, "seconds": 0.0, "coverage": {},
                "declined": None, "first": None}
        if inner is None:
            runs.append({**base, "declined": problem})
            continue
        start = time.perf_counter()
        reason = declined(arch, spec, dtype, seed) if spec in FRAMEWORKS else None
        if reason:
            runs.append({**base, "verdict": "declined", "declined": reason,
                         "seconds": round(time.perf_counter() - start, 3)})
            continue
        recording, log = _recording(inner)
        judged = dataclasses.replace(arch, families=arch.families[:1]) if spec == "jax" else arch
        report = check_graph(judged, recording, name=inner.name, seed=seed, per_family=per_family, dtypes=(dtype,))
        rows = [r for case, outcome in log[:report.cases]
                for r in judge_graph_case(case, _replay(inner.name, outcome))[0]]
        runs.append({**base, "cases": report.cases, "failures": report.failures, "verdict": report.verdict,
                     "worst_margin": _margin(rows), "seconds": round(time.perf_counter() - start, 3),
                     "coverage": {family: n for (family, _), n in report.coverage.items()},
                     "first": _first(report.first)})
        if draw and drawing is None and report.first is not None:
            f = report.first
            drawing = svg(f["case"], f["rows"], f["culprit"], uid=f"{arch_name}-{spec}")
    if draw and drawing is None and inner is not None:
        drawing = svg(*plain_judgement(arch, inner, dtypes[0], seed), uid=f"{arch_name}-{spec}")
    return runs, drawing


# --- the report --------------------------------------------------------------------------------------

def graph_report(out_dir, *, per_family=2, jax_per_family=1, seed=0, only=None, candidates=CANDIDATES,
                 dtypes=DTYPES, jobs=2, echo=print):
    """Check every candidate on every architecture (or those named in ``only``) in every dtype, with
    ``jobs`` worker processes (1: in this process); write OUT/graphs.json, graphs.md and graphs.html.
    The drawings are coloured by ``candidates[0]``'s judgement. Returns the report (a dict)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(only or architectures.ARCHITECTURES)
    for name in names:
        architectures.get(name)                                # an unknown name: ValueError now
    tasks = [(name, spec, tuple(dtypes), jax_per_family if spec == "jax" else per_family, seed, k == 0)
             for name in names for k, spec in enumerate(candidates)]
    order = sorted(range(len(tasks)), key=lambda i: tasks[i][1] != "jax")   # the slow ones first
    start = time.perf_counter()
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=get_context("spawn")) as pool:
            done = dict(zip(order, pool.map(_one, [tasks[i] for i in order])))
    else:
        done = {i: _one(tasks[i]) for i in order}
    runs, drawings = [], {}
    for i in range(len(tasks)):
        task_runs, drawing = done[i]
        runs += task_runs
        if drawing is not None:
            drawings[tasks[i][0]] = drawing
        for r in task_runs:
            echo(f"  {r['arch']:18} {r['candidate']:10} {r['dtype']:8} {r['cases']:3} cases, "
                 f"{r['failures']} failing: {r['verdict']}")
    report = {"format": FORMAT, "seed": seed, "per_family": per_family, "jax_per_family": jax_per_family,
              "dtypes": list(dtypes), "candidates": list(candidates),
              "seconds": round(time.perf_counter() - start, 3),
              "architectures": {n: {"description": architectures.get(n).description,
                                    "graph": architectures.get(n).graph(architectures.get(n).sizes[0]).to_json()}
                                for n in names},
              "runs": runs}
    report = jsonable(report)
    (out_dir / "graphs.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    write_markdown(report, out_dir / "graphs.md")
    write_html(report, drawings, out_dir / "graphs.html")
    return report


def _fmt(x, spec=".3g"):
    if x is None:
        return "-"
    if isinstance(x, str):                                     # jsonable's "inf"
        return x
    return format(x, spec)


def _verdict(r):
    return r["verdict"] + (f" ({r['declined']})" if r["declined"] and r["verdict"] != "declined" else "")


def write_markdown(report, path):
    """graphs.md: one row per architecture x candidate x dtype, then each failing run's diagnosis."""
    lines = ["# bpcheck graph report", "",
             "Each architecture's whole backward pass, per candidate and dtype, against the certified truth of its "
             f"graph: `check_graph` with {report['per_family']} cases per family (JAX "
             f"{report['jax_per_family']} of the plain family: it compiles per shape), seed {report['seed']}. "
             "*worst margin*: the least tolerance / error of any tensor in any case (below 1 fails, below 4 is "
             "near the tolerance); the frameworks return no deltas, so only their whole-graph tensors are judged, "
             "against the graph's looser bound. A declined run is one a framework documents it refuses. "
             "Regenerate with `bpcheck report` (or `bpcheck report --ops-only`).", "",
             "| architecture | candidate | dtype | cases | verdict | worst margin | s |",
             "|---|---|---|---:|---|---:|---:|"]
    for r in report["runs"]:
        lines.append(f"| {r['arch']} | {r['candidate']} | {r['dtype']} | {r['cases']} | {_verdict(r)} | "
                     f"{_fmt(r['worst_margin'])} | {r['seconds']:.1f} |")
    lines += ["", _tally(report)] + [f"- {line}" for line in _findings(report)]
    Path(path).write_text("\n".join(lines) + "\n")


def _tally(report):
    runs = report["runs"]
    return (f"{sum(r['verdict'] == 'fail' for r in runs)} of {len(runs)} runs fail, "
            f"{sum(r['verdict'] == 'declined' for r in runs)} declined.")


def _findings(report):
    """One line per failing run (its smallest case and first wrong node) and per declined run (why)."""
    lines = []
    for r in report["runs"]:
        f = r["first"]
        if r["verdict"] == "fail" and f is not None:
            lines.append(f"{r['arch']} {r['candidate']} {r['dtype']}: {r['failures']} failing; smallest {f['case']}; "
                         f"first wrong node {f['node']}: {f['words']}")
        elif r["verdict"] == "declined":
            lines.append(f"{r['arch']} {r['candidate']} {r['dtype']} declined: {r['declined']}")
    return lines


_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;"
          "border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right}pre{background:#f6f6f6;padding:1em;"
          "white-space:pre-wrap}.pass{background:#e8f5e9}.fail,.bug{background:#ffebee}.near,.declined,.kink,.tie"
          "{background:#fff8e1}figure{overflow-x:auto;margin:1em 0}")


def _page(title, body):
    esc = html.escape
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(printable(title))}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _table(head, rows):
    """rows: [(css class, [(cell text, numeric?)])]; every cell escaped."""
    esc = html.escape
    return ("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(f"<tr class='{esc(cls)}'>" + "".join(
                f"<td{' class=n' if num else ''}>{esc(printable(text))}</td>" for text, num in cells) + "</tr>"
                for cls, cells in rows) + "</tbody></table>")


def write_html(report, drawings, path):
    """graphs.html: the table, then each architecture's graph ({arch: SVG} ``drawings``)."""
    esc = html.escape
    head = ["architecture", "candidate", "dtype", "cases", "verdict", "worst margin", "seconds"]
    rows = [(r["verdict"], [(r["arch"], False), (r["candidate"], False), (r["dtype"], False), (str(r["cases"]), True),
                            (_verdict(r), False), (_fmt(r["worst_margin"]), True), (f"{r['seconds']:.1f}", True)])
            for r in report["runs"]]
    figures = "".join(
        f"<h2>{esc(printable(name))}</h2><p>{esc(printable(report['architectures'][name]['description']))}</p>"
        f"<figure>{drawings[name]}</figure>" for name in report["architectures"] if name in drawings)
    body = ("<h1>bpcheck graph report</h1>"
            f"<p>{esc(printable(_intro(report)))}</p>" + _table(head, rows)
            + f"<p>{esc(printable(_tally(report)))}</p><ul>"
            + "".join(f"<li>{esc(printable(line))}</li>" for line in _findings(report))
            + f"</ul><p>{esc(printable(_drawn(report)))}</p>" + figures)
    Path(path).write_text(_page("bpcheck graph report", body))


def _intro(report):
    return (f"Each architecture's whole backward pass, per candidate and dtype, against the certified truth of its "
            f"graph ({report['per_family']} cases per family; JAX {report['jax_per_family']} of the plain family, "
            f"as it compiles per shape; seed {report['seed']}). "
            "Worst margin: the least tolerance / error of any tensor in any case (below 1 fails, below 4 is near); "
            "the frameworks return no deltas, so only their whole-graph tensors are judged, against the graph's "
            "looser bound.")


def _drawn(report):
    first = report["candidates"][0] if report["candidates"] else "-"
    return (f"Each graph is coloured by the {first} candidate's judgement: its smallest failing case, or one plain "
            f"{report['dtypes'][0]} case when it passes. Green: every tensor of the box passes with margin at least 4; "
            "amber: passes nearer the tolerance; red: fails; a thick outline: the first wrong node.")


# --- bpcheck graph --html --------------------------------------------------------------------------

def validate_page(report, case, rows, culprit):
    """A standalone page for one ``check_graph`` (a GraphReport): the verdict, the diagnosis
    (``report.summary()``), the drawing of ``case`` coloured by ``rows`` (its judgement) with ``culprit``
    outlined, and a table of every row."""
    esc = html.escape
    head = ["scope", "node", "tensor", "status", "colour", "err_u", "tol_u", "margin", "message"]
    table = [(r.get("status", ""), [
        (r.get("scope", ""), False), (r.get("node") or r.get("value") or "", False), (r.get("tensor", ""), False),
        (r.get("status", ""), False), (box_status([r]), False), (_cell(r.get("err_u")), True),
        (_cell(r.get("tol_u")), True), (_cell(r.get("margin")), True), (r.get("message", ""), False)]) for r in rows]
    verdict = report.verdict.upper()
    colour = COLOURS["pass" if report.verdict == "pass" else "fail"]
    shown = ("the smallest failing case" if report.first is not None
             else "one plain case (the check passed)")
    body = (f"<h1>bpcheck graph {esc(printable(report.arch))}: "
            f"<span style='background:{colour};padding:0 .3em'>{esc(verdict)}</span></h1>"
            f"<p>{esc(printable(report.candidate))}: {report.cases} cases, {report.failures} failing.</p>"
            f"<pre>{esc(printable(report.summary()))}</pre>"
            f"<h2>{esc(shown)}: {esc(printable(case.describe()))}</h2>"
            f"<figure>{svg(case, rows, culprit)}</figure>"
            f"<h2>{esc(f'every row of that case ({len(rows)})')}</h2>" + _table(head, table))
    return _page(f"bpcheck graph {report.arch}: {verdict}", body)


def _cell(x):
    if x is None:
        return ""
    return _fmt(float(x)) if not isinstance(x, str) else x
