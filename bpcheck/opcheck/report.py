"""The op report: every op x dtype x implementation against the certified truth (reports/ops.*).

For each op of the catalog and each dtype, the reference (``reference/layers.py``), the second
implementation (``examples/cs231n_layers.py``) and each framework's built-ins (the record's torch and
jax bindings) are judged on the covering set (every edge family, ``per_family`` cases each). JAX
compiles per shape, so here it gets ``jax_per_family`` cases of the ordinary families (plain and a
uniform cotangent); ``tests/ops`` judges it on every edge family. Per (op, dtype, implementation): cases judged,
failing, declined, notes; the largest and median error in units of the tolerance (below 1 passes);
and the median sensitivity -- the tolerance relative to ||g*||, the smallest one-tensor relative error
the check catches. The ops are split over ``jobs`` worker processes. ``ops.html`` draws the largest error per op and implementation against the tolerance
(1) on a log scale, one panel per dtype. Every judged case streams to ``ops_cases.jsonl`` as it is judged.
"""
import base64
import html
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bpcheck import ops
from bpcheck.opcheck import candidates as cand
from bpcheck.ops.cases import cases
from bpcheck.opcheck.check import judge_case
from bpcheck.ops.record import COMMON_FAMILIES

__all__ = ["op_report", "implementations", "write_markdown", "write_html"]

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"reference": ROOT / "reference" / "layers.py", "second": ROOT / "examples" / "cs231n_layers.py"}


def implementations(op):
    """(name, Candidate) pairs judged for ``op``: the two NumPy layers modules, torch, jax."""
    found = []
    if op.cs231n:
        found += [(name, cand.cs231n(path, name, extended=True)) for name, path in LAYERS.items() if path.is_file()]
    found += [(fw, cand.builtin(op, fw)) for fw in ("torch", "jax") if getattr(op, fw) is not None]
    return found


def _stats(rows):
    judged = [r for r in rows if "error" in r]
    ratio = [r["error"] / r["allowed"] for r in judged if r["allowed"] > 0]
    sens = [r["allowed"] / r["truth_norm"] for r in judged if r.get("truth_norm", 0) > 0]
    return ratio, sens


def _one_op(task):
    """(groups, case lines) of one op: every implementation x dtype (a worker's unit of work)."""
    name, per_family, jax_per_family, seed = task
    op, groups, lines = ops.get(name), [], []
    for who, candidate in implementations(op):
        for dtype in ("float32", "float64"):
            start = time.perf_counter()
            counts = {"cases": 0, "failing": 0, "declined": 0, "tie": 0}
            ratios, sens, wrong = [], [], []
            k = jax_per_family if who == "jax" else per_family
            for case in cases(op, (dtype,), k, seed):
                if who == "jax" and case.family not in COMMON_FAMILIES:
                    continue                              # JAX compiles per shape: its edge families are tests/ops's
                rows, cls = judge_case(op, candidate, case)
                if cls == "unsupported":
                    counts["declined"] += 1
                    continue
                counts["cases"] += 1
                counts["failing"] += cls == "bug"
                counts["tie"] += cls == "tie"
                r, s = _stats(rows)
                ratios += r
                sens += s
                if cls == "bug":
                    wrong.append(case.describe())
                lines.append(json.dumps({"op": name, "who": who, "dtype": dtype, "family": case.family,
                                         "seed": case.seed, "class": cls,
                                         "rows": [{k2: v for k2, v in row.items() if k2 != "entries"}
                                                  for row in rows]}, default=float))
            groups.append({"op": name, "dtype": dtype, "who": who, **counts,
                           "max_ratio": max(ratios, default=0.0), "median_ratio": float(np.median(ratios or [0])),
                           "median_sensitivity": float(np.median(sens or [np.nan])),
                           "seconds": round(time.perf_counter() - start, 3), "failing_cases": wrong[:5]})
    return groups, lines


def op_report(out_dir, *, per_family=4, jax_per_family=1, seed=0, only=None, jobs=2, echo=print):
    """Judge every implementation of every op (or the names in ``only``), ``jobs`` worker processes
    splitting the ops; write OUT/ops.json, ops.md, ops.html and ops_cases.jsonl. Returns the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(only or ops.names())
    tasks = [(name, per_family, jax_per_family, seed) for name in names]
    groups = []
    with open(out_dir / "ops_cases.jsonl", "w") as stream, ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        for op_groups, lines in pool.map(_one_op, tasks):
            stream.write("".join(line + "\n" for line in lines))
            stream.flush()
            groups += op_groups
            for g in op_groups:
                echo(f"  {g['op']:18} {g['dtype']:8} {g['who']:10} {g['cases']:4} cases, {g['failing']} failing, "
                     f"max {g['max_ratio']:.3g} of the tolerance")
    report = {"groups": groups, "per_family": per_family, "jax_per_family": jax_per_family, "seed": seed,
              "ops": {n: {"definition": ops.get(n).definition, "families": list(ops.get(n).families)} for n in names}}
    (out_dir / "ops.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    write_markdown(report, out_dir / "ops.md")
    write_html(report, out_dir / "ops.html")
    return report


def write_markdown(report, path):
    lines = ["# bpcheck op report", "",
             "Each op x dtype x implementation judged against the certified truth on every edge family of its "
             f"record ({report['per_family']} cases per family and dtype; JAX {report['jax_per_family']} of the plain and "
             "uniform-cotangent families, its edge families are judged in tests/ops). "
             "*max* and *median*: the error in units of the tolerance (a tensor passes below 1). "
             "*sensitivity*: the median tolerance relative to ||g*|| -- the smallest one-tensor relative error "
             "caught. Regenerate with `bpcheck report` (or `bpcheck report --ops-only`).", "",
             "| op | dtype | implementation | cases | failing | declined | tie | max | median | sensitivity | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in report["groups"]:
        lines.append(f"| {g['op']} | {g['dtype']} | {g['who']} | {g['cases']} | {g['failing']} | {g['declined']} | "
                     f"{g['tie']} | {g['max_ratio']:.3g} | {g['median_ratio']:.3g} | "
                     f"{g['median_sensitivity']:.2g} | {g['seconds']:.1f} |")
    failing = [g for g in report["groups"] if g["failing"]]
    lines += ["", f"{len(failing)} of {len(report['groups'])} groups have a failing case."]
    for g in failing:
        lines.append(f"- {g['op']} {g['dtype']} {g['who']}: " + "; ".join(g["failing_cases"]))
    Path(path).write_text("\n".join(lines) + "\n")


def _plot(report):
    """A PNG (base64): per dtype, the largest error / tolerance of each implementation on each op."""
    from matplotlib.figure import Figure
    names = sorted({g["op"] for g in report["groups"]})
    whos = sorted({g["who"] for g in report["groups"]})
    fig = Figure(figsize=(11, 6.5), dpi=100)
    for row, dtype in enumerate(("float32", "float64")):
        ax = fig.add_subplot(2, 1, row + 1)
        width = 0.8 / max(len(whos), 1)
        for k, who in enumerate(whos):
            got = {g["op"]: g["max_ratio"] for g in report["groups"] if g["who"] == who and g["dtype"] == dtype}
            xs = [i + k * width for i, n in enumerate(names) if n in got]
            ax.bar(xs, [max(got[n], 1e-6) for n in names if n in got], width, label=who)
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_yscale("log")
        ax.set_ylabel(f"{dtype}: max error / tolerance")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
        ax.set_xticklabels(names if row else [""] * len(names), rotation=60, ha="right", fontsize=8)
        if not row:
            ax.legend(fontsize=8, ncol=len(whos))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(report, path):
    """One self-contained page: the plot and the table, every string escaped."""
    esc = html.escape
    head = ["op", "dtype", "implementation", "cases", "failing", "declined", "tie", "max", "median", "sensitivity"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in (
            g["op"], g["dtype"], g["who"], g["cases"], g["failing"], g["declined"], g["tie"],
            f"{g['max_ratio']:.3g}", f"{g['median_ratio']:.3g}", f"{g['median_sensitivity']:.2g}")) + "</tr>"
        for g in report["groups"])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>bpcheck op report</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
            "td:nth-child(-n+3){text-align:left}</style></head><body><h1>bpcheck op report</h1>"
            f"<p>{esc('Each op x dtype x implementation against the certified truth on every edge family of its record. ')}"
            f"{esc('Bars: the largest error of any tensor in units of its tolerance (a tensor passes below the dashed line at 1).')}</p>"
            f"<img alt='largest error per op and implementation' src='data:image/png;base64,{_plot(report)}'>"
            "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + rows + "</tbody></table></body></html>\n")
    Path(path).write_text(page)
