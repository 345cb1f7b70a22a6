"""``bpcheck report``: error tables and plots per layer, loss and dtype.

The candidate (the NumPy reference unless told otherwise) and the framework
oracles torch and jax, all in the case's dtype, are measured against the same
high-precision truth, so one table shows whether the candidate is as accurate
as the frameworks. Cases come from ``bpcheck.runner`` (the strategies of the
property tests); this module aggregates the records into

- ``report.json``  (schema: ``bpcheck/schemas/report.schema.json``),
- ``report.md``    tables per loss, layer, network depth, activation, tensor,
- ``index.html``   one self-contained page: the tables and embedded plots
                   (``bpcheck.plots``); every string on it goes through
                   ``html.escape``.

Statistics: errors are in units of the dtype's unit roundoff u; quantiles are
order statistics (``numpy.quantile(method="inverted_cdf")``: the smallest error
with at least that fraction of rows at or below it), so an infinite error
stays infinite instead of turning into NaN by interpolation.
"""
import html
import json
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import click

from bpcheck.spec import ACTIVATIONS, DTYPES, LOSSES

REPORT_VERSION = 1
CLASSES = ("pass", "bug", "kink", "convention", "precision", "oracle_disagreement")
ORACLE_NAMES = ("torch", "jax")
POSITIONS = tuple(f"layer {i}" for i in range(64)) + ("input_grad", "loss")
DEFAULT_EXAMPLES = 3
DEFAULT_SEED = 20240601
MAX_LISTED = 40  # failing rows listed per report (the worst first, every class represented)
LIBRARIES = ("numpy", "torch", "jax", "jaxlib", "optax", "mpmath", "hypothesis", "matplotlib",
             "jsonschema", "rich", "click")


# ---- aggregation -------------------------------------------------------------

def position(row):
    """'layer 2', 'input_grad' or 'loss': where in the network a row's tensor lives."""
    return row["tensor"] if row["layer"] is None else f"layer {row['layer']}"


def quantile(values, q):
    import numpy as np
    return float(np.quantile(np.asarray(values, dtype=float), q, method="inverted_cdf"))


def stats(rows):
    """Error statistics of a group of rows (errors and tolerances in u)."""
    err = [r["err_u"] for r in rows]
    err = [e if not (isinstance(e, float) and math.isnan(e)) else math.inf for e in err]
    classes = Counter(r["class"] for r in rows)
    return {
        "n": len(rows),
        "median_u": quantile(err, 0.5),
        "p99_u": quantile(err, 0.99),
        "max_u": max(err),
        "median_tol_u": quantile([r["tol_u"] for r in rows], 0.5),
        "min_margin": min(r["margin"] for r in rows),
        "failures": len(rows) - classes.get("pass", 0),
        "classes": {c: classes.get(c, 0) for c in CLASSES},
    }


# Groupings: name -> the row fields (beyond who and dtype) that key a group.
GROUPINGS = {
    "summary": (),
    "loss": ("loss",),
    "layer": ("position",),
    "depth": ("depth",),
    "activation": ("activation",),
    "tensor": ("tensor",),
    "width": ("width",),
    "loss_layer": ("loss", "position"),
    "loss_activation": ("loss", "activation"),
}


def _key(row, field):
    return {"loss": row["loss_fn"], "position": position(row)}.get(field, row.get(field))


def group(rows, fields):
    """Stats per (who, dtype, *fields); rows lacking a field (e.g. the loss has no activation) are left out."""
    buckets = defaultdict(list)
    for r in rows:
        key = tuple(_key(r, f) for f in fields)
        if None not in key:
            buckets[(r["who"], r["dtype"], key)].append(r)
    return [{"who": who, "dtype": dtype, "key": dict(zip(fields, key)), **stats(rs)}
            for (who, dtype, key), rs in buckets.items()]


def _order(report_whos):
    def sort_key(entry):
        k = entry["key"]
        parts = []
        for field in sorted(k):
            v = k[field]
            if field == "loss":
                v = LOSSES.index(v) if v in LOSSES else len(LOSSES)
            elif field == "activation":
                v = ACTIVATIONS.index(v) if v in ACTIVATIONS else len(ACTIVATIONS)
            elif field == "position":
                v = POSITIONS.index(v) if v in POSITIONS else len(POSITIONS)
            parts.append((v if isinstance(v, int) else 0, str(v)))
        who = report_whos.index(entry["who"]) if entry["who"] in report_whos else len(report_whos)
        return (DTYPES.index(entry["dtype"]) if entry["dtype"] in DTYPES else 9, parts, who)
    return sort_key


def _ratio(a, b):
    """a / b for medians in u: 1 when both are exact, inf when only the denominator is."""
    if a is None or b is None:
        return None
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


def side_by_side(groups, candidate):
    """Per dtype, loss and position: candidate median ÷ each framework's median."""
    medians = {(g["who"], g["dtype"], g["key"]["loss"], g["key"]["position"]): g["median_u"]
               for g in groups}
    out = []
    for (who, dtype, loss, pos), median in medians.items():
        if who != candidate:
            continue
        entry = {"dtype": dtype, "loss": loss, "position": pos, "candidate_median_u": median}
        for o in ORACLE_NAMES:
            entry[f"{o}_median_u"] = medians.get((o, dtype, loss, pos))
            entry[f"vs_{o}"] = _ratio(median, entry[f"{o}_median_u"])
        out.append(entry)
    out.sort(key=lambda e: (DTYPES.index(e["dtype"]) if e["dtype"] in DTYPES else 9,
                            LOSSES.index(e["loss"]) if e["loss"] in LOSSES else 99,
                            POSITIONS.index(e["position"]) if e["position"] in POSITIONS else 999))
    return out


def listed_failures(rows, limit=MAX_LISTED):
    """The worst failing rows: each class's worst first, then the rest by margin."""
    from bpcheck.compare import describe
    bad = sorted((r for r in rows if r["class"] != "pass"), key=lambda r: (r["margin"], r["case"]))
    picked, seen = [], set()
    for cls in CLASSES[1:]:
        for r in [r for r in bad if r["class"] == cls][:3]:
            picked.append(r)
            seen.add(id(r))
    picked += [r for r in bad if id(r) not in seen][:max(0, limit - len(picked))]
    picked.sort(key=lambda r: (r["margin"], r["case"]))
    return [{"case": r["case"], "who": r["who"], "dtype": r["dtype"], "loss": r["loss_fn"],
             "position": position(r), "tensor": r["tensor"], "activation": r["activation"],
             "class": r["class"], "err_u": r["err_u"], "tol_u": r["tol_u"], "margin": r["margin"],
             "description": describe(r)} for r in picked[:limit]]


def aggregate(records, meta):
    """The report dict (without environment and timing; see ``write_reports``)."""
    ok = [r for r in records if r["status"] == "ok"]
    candidate_rows = [row for r in ok for row in r["rows"]]
    oracle_rows = [row for r in ok for row in r["oracle_rows"]]
    rows = candidate_rows + oracle_rows
    candidates = sorted({r["who"] for r in records} - set(ORACLE_NAMES)) or ["candidate"]
    whos = candidates + list(ORACLE_NAMES)
    groups = {}
    for name, fields in GROUPINGS.items():
        groups[name] = sorted(group(rows, fields), key=_order(whos))
    dtypes = [d for d in DTYPES if any(r["spec"]["dtype"] == d for r in records)]
    dtypes += sorted({r["spec"]["dtype"] for r in records} - set(dtypes))
    status = Counter(r["status"] for r in records)
    return {
        "bpcheck_report": REPORT_VERSION,
        "candidate": candidates[0],
        "whos": whos,
        "dtypes": dtypes,
        "counts": {"cases": len(records), **{s: status.get(s, 0) for s in ("ok", "unsupported", "error")},
                   "rows": len(candidate_rows), "oracle_rows": len(oracle_rows),
                   "cases_with_kinks": sum(1 for r in ok if r.get("kinks"))},
        "coverage": {
            "losses": sorted({r["spec"]["loss"] for r in records}, key=_index(LOSSES)),
            "activations": sorted({l["activation"] for r in records for l in r["spec"]["layers"]},
                                  key=_index(ACTIVATIONS)),
            "depths": sorted({len(r["spec"]["layers"]) for r in records}),
            "widths": sorted({l["units"] for r in records for l in r["spec"]["layers"]}),
            "batches": sorted({r["batch"] for r in records}),
        },
        "groups": groups,
        "side_by_side": side_by_side(groups["loss_layer"], candidates[0]),
        "failures": listed_failures(candidate_rows),
        "oracle_disagreements": listed_failures(oracle_rows, limit=20),
        "problems": [{"case": r["case"], "status": r["status"], "stage": r.get("stage"),
                      "message": (r.get("message") or "")[:2000]}
                     for r in records if r["status"] != "ok"],
        "meta": meta,
    }


def _index(seq):
    return lambda v: (seq.index(v) if v in seq else len(seq), v)


def environment(jobs=None):
    """Library versions, platform and thread counts, for the record."""
    from importlib import metadata

    import numpy as np

    from bpcheck import __version__
    from bpcheck.runner import SINGLE_THREAD_ENV
    versions = {"bpcheck": __version__, "python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    threads = {"cpu_count": os.cpu_count(),
               "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
               "jobs": jobs,
               "worker_torch_threads": 1 if jobs and jobs > 1 else None,
               "worker_env": dict(SINGLE_THREAD_ENV) if jobs and jobs > 1 else None,
               "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                        "OPENBLAS_NUM_THREADS", "XLA_FLAGS")}}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        threads["torch_threads"] = torch.get_num_threads()
        threads["torch_interop_threads"] = torch.get_num_interop_threads()
    return {"libraries": versions, "platform": platform.platform(), "machine": platform.machine(),
            "longdouble_mantissa_bits": int(np.finfo(np.longdouble).nmant), "threads": threads}


# ---- writing -----------------------------------------------------------------

def write_reports(records, out_dir, *, meta, extra_sections=()):
    """Write report.json, report.md and index.html into ``out_dir``; return the report dict.

    ``meta`` holds what the caller knows (seed, flags, command line, timings);
    library versions, thread counts, the dtype list and the tolerance table are
    added here. ``extra_sections`` are (title, markdown, html_fragment) appended to
    the .md and the .html; the fragment must already be escaped by its author.
    """
    from bpcheck.compare import TOLERANCE, UNIT_ROUNDOFF
    from bpcheck.runner import jsonable

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    report = aggregate(records, meta)
    report["generated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["environment"] = environment(_flags(meta).get("jobs"))
    report["tolerance"] = {k: {"value": v, "reason": why} for k, (v, why) in TOLERANCE.items()}
    report["unit_roundoff"] = {d: UNIT_ROUNDOFF[d] for d in report["dtypes"] if d in UNIT_ROUNDOFF}
    seconds = [r.get("seconds") or 0.0 for r in records]
    timing = dict(meta.get("timing", {}))
    timing["case_seconds_total"] = round(sum(seconds), 3)
    timing["case_seconds_median"] = quantile(seconds, 0.5) if seconds else None
    if timing.get("run_seconds"):  # cases judged in this run (a resumed run read the rest back)
        timing["cases_per_second"] = round(timing.get("cases_run", len(records)) / timing["run_seconds"], 3)
    report["timing"] = timing
    report["extra_sections"] = [title for title, _, _ in extra_sections]

    from bpcheck import plots
    figures = plots.figures(report, records)
    report["figures"] = [{"id": f.id, "title": f.title} for f in figures]
    heat = next((f for f in figures if f.id.startswith("heatmap-layer")), None)
    if heat is not None:
        (out_dir / "heatmap.png").write_bytes(heat.png)
    report["timing"]["report_seconds"] = round(time.perf_counter() - start, 3)

    report = jsonable(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, extra_sections))
    (out_dir / "index.html").write_text(render_html(report, figures, extra_sections))
    return report


# ---- formatting --------------------------------------------------------------

def fmt(v, digits=3):
    """A number for a table cell: 3 significant digits, ∞ for infinity, — for none."""
    if v is None:
        return "—"
    if isinstance(v, str):
        v = float(v) if v in ("inf", "-inf", "nan") else v
        if isinstance(v, str):
            return v
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if isinstance(v, int):
        return str(v)
    if v != 0 and (abs(v) >= 10**6 or abs(v) < 10**-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


STAT_HEADERS = ("rows", "median u", "p99 u", "max u", "median tol u", "min margin", "failures",
                "bug", "kink", "convention", "precision", "oracle disagr.")


def stat_cells(g):
    return [str(g["n"]), fmt(g["median_u"]), fmt(g["p99_u"]), fmt(g["max_u"]), fmt(g["median_tol_u"]),
            fmt(g["min_margin"], 2), str(g["failures"])] + [str(g["classes"][c]) for c in CLASSES[1:]]


TABLES = (  # (grouping, title, first column)
    ("loss", "By loss", "loss"),
    ("layer", "By layer (layer 0 is next to the input)", "layer"),
    ("depth", "By network depth", "depth"),
    ("activation", "By activation of the layer", "activation"),
    ("tensor", "By tensor", "tensor"),
)


def table_rows(report, grouping, dtype):
    field = GROUPINGS[grouping]
    out = []
    for g in report["groups"][grouping]:
        if g["dtype"] == dtype:
            out.append(([str(g["key"][f]) for f in field], g["who"], g))
    return out


def summary_line(report):
    c, t, m = report["counts"], report["timing"], report["meta"]
    flags = _flags(m)
    line = (f"{c['cases']} cases ({c['ok']} judged, {c['unsupported']} unsupported, {c['error']} errors), "
            f"{c['rows']} candidate rows and {c['oracle_rows']} oracle rows; seed {m.get('seed')}, "
            f"{flags.get('examples', '?')} example(s) per loss × activation × dtype, depths "
            f"{_span(report['coverage']['depths'])}, widths {_span(report['coverage']['widths'])}, "
            f"batches {_span(report['coverage']['batches'])}")
    if t.get("wall_seconds"):
        line += f"; wall time {fmt(t['wall_seconds'])} s with {flags.get('jobs', '?')} job(s)"
    if t.get("cases_per_second"):
        line += f", {fmt(t['cases_per_second'])} cases/s"
    return line


def _flags(meta):
    """The run's flags: meta["flags"], or meta itself for callers that keep them at the top."""
    if isinstance(meta.get("flags"), dict):
        return meta["flags"]
    return {k: v for k, v in meta.items() if k not in ("timing", "command")}


def _span(values):
    return f"{values[0]}–{values[-1]}" if values else "none"


def ratio_table(report, dtype, oracle):
    """Rows: loss; columns: positions; cells: candidate median ÷ oracle median."""
    entries = [e for e in report["side_by_side"] if e["dtype"] == dtype]
    losses = sorted({e["loss"] for e in entries}, key=_index(LOSSES))
    positions = [p for p in POSITIONS if any(e["position"] == p for e in entries)]
    cell = {(e["loss"], e["position"]): e[f"vs_{oracle}"] for e in entries}
    return positions, [(l, [fmt(cell.get((l, p)), 2) for p in positions]) for l in losses]


# ---- Markdown ----------------------------------------------------------------

def _md_cell(text):
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(headers, rows):
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report, extra_sections=()):
    cand = report["candidate"]
    out = [f"# bpcheck report: `{_md_cell(cand)}` beside torch and jax", "",
           f"Generated {report['generated']}. " + summary_line(report) + ".", "",
           "Every row is one tensor (a layer's W, b, delta or activation, the input gradient or the "
           "loss) of one case. Its error is the normwise relative error against the high-precision "
           "truth (mpmath, 50 digits) in units of the dtype's unit roundoff u (float32 2⁻²⁴, "
           "float64 2⁻⁵³). torch and jax run the same case in the same dtype. A row passes when "
           f"error ≤ α × (the worse framework's error) + floor, α = {fmt(report['tolerance']['alpha']['value'])}, "
           f"floor × κ, floor = {fmt(report['tolerance']['floor_u']['value'])} u and κ ≥ 1 the condition "
           "number of the sum behind the tensor (1 without cancellation); margin = tolerance ÷ error "
           "(below 1 fails). torch and jax are judged the same way against each other. Quantiles are "
           "order statistics.", "",
           "## Summary", ""]
    out.append(md_table(["dtype", "who"] + list(STAT_HEADERS),
                        [[g["dtype"], g["who"]] + stat_cells(g) for g in report["groups"]["summary"]]))
    out += ["", "## Side by side: candidate ÷ framework (median error ratio)", "",
            f"Each cell is `{_md_cell(cand)}`'s median error divided by the framework's median error on the "
            "same rows (1 = as accurate; below 1 = more accurate; both exact counts as 1).", ""]
    for dtype in report["dtypes"]:
        for oracle in ORACLE_NAMES:
            positions, rows = ratio_table(report, dtype, oracle)
            if rows:
                out += [f"### {dtype}: {_md_cell(cand)} ÷ {oracle}", "",
                        md_table(["loss"] + positions, [[l] + cells for l, cells in rows]), ""]
    for dtype in report["dtypes"]:
        out += [f"## {dtype}", ""]
        for grouping, title, first in TABLES:
            rows = table_rows(report, grouping, dtype)
            out += [f"### {title}", "",
                    md_table([first, "who"] + list(STAT_HEADERS),
                             [keys + [who] + stat_cells(g) for keys, who, g in rows]), ""]
    out += ["## Failing rows of the candidate (worst first)", ""]
    out += [f"- `{_md_cell(f['case'])}`: {_md_cell(f['description'])}" for f in report["failures"]] \
        or ["None."]
    out += ["", "## Oracle disagreements (torch or jax beyond the bound from the other)", ""]
    out += [f"- `{_md_cell(f['case'])}`: {_md_cell(f['description'])}"
            for f in report["oracle_disagreements"]] or ["None."]
    out += ["", "## Cases not judged", ""]
    out += [f"- `{_md_cell(p['case'])}` {p['status']} ({p['stage']}): {_md_cell(p['message'][:300])}"
            for p in report["problems"]] or ["None."]
    out += ["", "## Tolerances", "",
            md_table(["name", "value", "reason"],
                     [[k, fmt(v["value"]), v["reason"]] for k, v in report["tolerance"].items()]),
            "", "## Environment", ""]
    env = report["environment"]
    out.append(md_table(["library", "version"], [[k, v or "—"] for k, v in env["libraries"].items()]))
    out += ["", f"Platform {env['platform']}; threads: `{_md_cell(json.dumps(env['threads']))}`; "
                f"flags: `{_md_cell(json.dumps(_flags(report['meta'])))}`; "
                f"command: `{_md_cell(report['meta'].get('command', ''))}`.", ""]
    for title, markdown, _ in extra_sections:
        out += [f"## {title}", "", markdown.rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"


# ---- HTML --------------------------------------------------------------------

def e(text):
    """Escape anything for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1250px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:12.5px}
th,td{border:1px solid #ddd;padding:2px 7px;text-align:right}th{background:#f3f3f3}
td.k,th.k{text-align:left}tr.cand td{background:#fbfbf0}
td.bad{color:#a00;font-weight:600}figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:13px}code,pre{font-size:12.5px}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em}
nav a{margin-right:1em}.note{color:#555}h1 code,h2 code,h3 code{font-size:inherit}
"""


def html_table(headers, rows, *, first_cols=1, highlight=None):
    head = "".join(f'<th class="k">{e(h)}</th>' if i < first_cols else f"<th>{e(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cls = ' class="cand"' if highlight and highlight(row) else ""
        cells = "".join(f'<td class="k">{e(c)}</td>' if i < first_cols else f"<td>{e(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report, figures=(), extra_sections=()):
    cand = report["candidate"]
    is_cand = lambda col: lambda row: row[col] == cand  # noqa: E731
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">',
             f"<title>bpcheck report: {e(cand)}</title><style>{CSS}</style></head><body>",
             f"<h1>bpcheck report: <code>{e(cand)}</code> beside torch and jax</h1>",
             f'<p class="note">Generated {e(report["generated"])}. {e(summary_line(report))}.</p>',
             '<nav><a href="#summary">Summary</a><a href="#plots">Plots</a><a href="#side">Side by side</a>'
             + "".join(f'<a href="#{e(d)}">{e(d)} tables</a>' for d in report["dtypes"])
             + '<a href="#failures">Failures</a><a href="#env">Environment</a></nav>',
             '<h2 id="summary">Summary</h2>',
             "<p>Errors are normwise relative errors against the high-precision truth (mpmath, 50 digits), "
             "in units of the dtype's unit roundoff u. A row passes when error ≤ α × (the worse framework's "
             f"error) + floor × κ, α = {e(fmt(report['tolerance']['alpha']['value']))}, floor = "
             f"{e(fmt(report['tolerance']['floor_u']['value']))} u, κ ≥ 1 the condition number of the sum "
             "behind the tensor; margin = tolerance ÷ error.</p>",
             html_table(["dtype", "who"] + list(STAT_HEADERS),
                        [[g["dtype"], g["who"]] + stat_cells(g) for g in report["groups"]["summary"]],
                        first_cols=2, highlight=is_cand(1)),
             '<h2 id="plots">Plots</h2>']
    for fig in figures:
        parts.append(fig.html())
    parts += ['<h2 id="side">Side by side: candidate ÷ framework (median error ratio)</h2>',
              f"<p>Each cell: <code>{e(cand)}</code>'s median error ÷ the framework's median error on the "
              "same rows; 1 = as accurate, below 1 = more accurate, both exact counts as 1.</p>"]
    for dtype in report["dtypes"]:
        for oracle in ORACLE_NAMES:
            positions, rows = ratio_table(report, dtype, oracle)
            if rows:
                parts += [f"<h3>{e(dtype)}: {e(cand)} ÷ {e(oracle)}</h3>",
                          html_table(["loss"] + positions, [[l] + cells for l, cells in rows])]
    for dtype in report["dtypes"]:
        parts.append(f'<h2 id="{e(dtype)}">{e(dtype)}</h2>')
        for grouping, title, first in TABLES:
            rows = [keys + [who] + stat_cells(g) for keys, who, g in table_rows(report, grouping, dtype)]
            parts += [f"<h3>{e(title)}</h3>",
                      html_table([first, "who"] + list(STAT_HEADERS), rows, first_cols=2,
                                 highlight=is_cand(1))]
    parts.append('<h2 id="failures">Failing rows of the candidate (worst first)</h2>')
    parts.append(_html_failures(report["failures"]))
    parts.append("<h2>Oracle disagreements</h2>")
    parts.append(_html_failures(report["oracle_disagreements"]))
    parts.append("<h2>Cases not judged</h2>")
    parts.append(html_table(["case", "status", "stage", "message"],
                            [[p["case"], p["status"], p["stage"] or "", p["message"][:500]]
                             for p in report["problems"]], first_cols=4)
                 if report["problems"] else "<p>None.</p>")
    env = report["environment"]
    parts += ['<h2 id="env">Tolerances and environment</h2>',
              html_table(["name", "value", "reason"],
                         [[k, fmt(v["value"]), v["reason"]] for k, v in report["tolerance"].items()],
                         first_cols=1),
              html_table(["library", "version"], [[k, v or "—"] for k, v in env["libraries"].items()]),
              f"<p>Platform {e(env['platform'])}.</p>",
              f"<pre>threads: {e(json.dumps(env['threads']))}\nflags: "
              f"{e(json.dumps(_flags(report['meta'])))}\ncommand: "
              f"{e(report['meta'].get('command', ''))}\ntiming: {e(json.dumps(report['timing']))}</pre>"]
    for title, _, fragment in extra_sections:
        parts += [f"<h2>{e(title)}</h2>", fragment]  # the fragment's author escaped it
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _html_failures(failures):
    if not failures:
        return "<p>None.</p>"
    return "<ul>" + "".join(f"<li><code>{e(f['case'])}</code><pre>{e(f['description'])}</pre></li>"
                            for f in failures) + "</ul>"


# ---- the command -------------------------------------------------------------

def _choices(known):
    def parse(ctx, param, value):
        if value in (None, "", "all"):
            return list(known)
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in known]
        if unknown:
            raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(known)} or 'all'")
        return items
    return parse


def default_jobs():
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:
        return max(1, min(os.cpu_count() or 1, 8))


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--examples", type=click.IntRange(1), default=DEFAULT_EXAMPLES, show_default=True,
              help="Cases per loss × activation × dtype cell.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Hypothesis seed.")
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Output directory.")
@click.option("--losses", default="all", show_default=True, callback=_choices(LOSSES),
              help="Comma-separated losses.")
@click.option("--activations", default="all", show_default=True, callback=_choices(ACTIVATIONS),
              help="Comma-separated activations.")
@click.option("--dtypes", default="all", show_default=True, callback=_choices(DTYPES),
              help="Comma-separated dtypes.")
@click.option("--max-depth", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Networks have 1..max-depth layers.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=default_jobs, show_default="usable CPUs, ≤ 8",
              help="Worker processes.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/cases.jsonl.")
@click.option("--candidate", default="reference", show_default=True,
              help="Implementation to report on: reference, module:function or path.py:function.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress.")
def report_command(examples, seed, out, losses, activations, dtypes, max_depth, jobs, resume,
                   candidate, progress):
    """Measure the candidate, torch and jax against high-precision truth; write OUT/report.json,
    report.md, index.html and cases.jsonl."""
    from bpcheck import runner

    wall = time.perf_counter()
    if jobs == 1:
        runner.set_single_thread()
    if os.getcwd() not in sys.path:  # `bpcheck` is a script: let module:function resolve as with `python -m`
        sys.path.insert(0, os.getcwd())
    flags = {"examples": examples, "seed": seed, "out": str(out), "losses": losses,
             "activations": activations, "dtypes": dtypes, "max_depth": max_depth, "jobs": jobs,
             "resume": resume, "candidate": candidate}
    t0 = time.perf_counter()
    cases = runner.generate_cases(seed, examples, losses=losses, activations=activations,
                                  dtypes=dtypes, max_depth=max_depth)
    t1 = time.perf_counter()
    click.echo(f"bpcheck report: {len(cases)} cases ({examples} per cell of "
               f"{len(losses)} losses × {len(activations)} activations × {len(dtypes)} dtypes), "
               f"{jobs} job(s) -> {out}/", err=True)
    before = {r["case"] for r in runner.load_records(Path(out) / runner.CASES_FILE)} if resume else set()
    try:
        records = runner.run_cases(cases, candidate, out_dir=out, jobs=jobs, resume=resume,
                                   who=candidate, progress=progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    t2 = time.perf_counter()
    meta = {"seed": seed, "flags": flags, "command": " ".join(["bpcheck"] + sys.argv[1:]),
            "timing": {"generate_seconds": round(t1 - t0, 3), "run_seconds": round(t2 - t1, 3),
                       "cases_run": sum(1 for c in cases if c.id not in before),
                       "wall_seconds": round(time.perf_counter() - wall, 3)}}
    report = write_reports(records, out, meta=meta)
    wall = time.perf_counter() - wall
    for g in report["groups"]["summary"]:
        click.echo(f"  {g['dtype']:8} {g['who']:10} median {fmt(g['median_u']):>6} u  p99 {fmt(g['p99_u']):>7} u  "
                   f"max {fmt(g['max_u']):>8} u  failures {g['failures']}/{g['n']}  "
                   + " ".join(f"{c} {n}" for c, n in g["classes"].items() if n and c != "pass"))
    c = report["counts"]
    click.echo(f"{c['cases']} cases in {wall:.1f} s ({c['unsupported']} unsupported, {c['error']} errors); "
               f"wrote {out}/report.json, report.md, index.html, cases.jsonl, heatmap.png")
