"""The dense report: error tables and plots per layer, loss and dtype (``bpcheck report``: ``bpcheck.cli.report``).

The candidate (the NumPy reference unless told otherwise) and the framework
oracles torch and jax, all in the case's dtype, are measured against the same
exact truth and judged by the same rule (``bpcheck.judge.judge``), so one table
shows whether the candidate is as accurate as the frameworks. Cases come from
``bpcheck.cases.generate`` (the recipe of the property tests, edge families
included); this module aggregates the records into

- ``report.json``  (schema: ``bpcheck/schemas/report.schema.json``),
- ``report.md``    tables per loss, layer, network depth, activation, tensor,
- ``index.html``   one self-contained page: the tables and embedded plots
                   (``bpcheck.report.plots``), rendered by ``bpcheck.report.render``.

Statistics: errors are in units of the dtype's unit roundoff u; quantiles are
order statistics (``numpy.quantile(method="inverted_cdf")``: the smallest error
with at least that fraction of rows at or below it), so an infinite error
stays infinite instead of turning into NaN by interpolation.
"""
import json
import math
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path


from bpcheck.cases.generate import coverage as edge_coverage
from bpcheck.core.spec import ACTIVATIONS, DTYPES, LOSSES
from bpcheck.judge.classify import CLASSES, NOTES, REAL
from bpcheck.report.render import GROUPINGS, POSITIONS, _flags, _index

REPORT_VERSION = 2
ORACLE_NAMES = ("torch", "jax")
DEFAULT_EXAMPLES = 3
DEFAULT_SEED = 20240601
MAX_LISTED = 40  # failing rows listed per report (the worst first, every class represented)
LIBRARIES = ("numpy", "scipy", "torch", "jax", "jaxlib", "optax", "python-flint", "mpmath", "hypothesis",
             "matplotlib", "jsonschema", "rich", "click")


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
        "median_tol_u": quantile([_nan_inf(r["tol_u"]) for r in rows], 0.5),
        "min_margin": min((r["margin"] for r in rows if r["class"] not in NOTES), default=math.inf),
        "median_sensitivity": quantile([_nan_inf(r.get("sensitivity")) for r in rows], 0.5),
        "failures": sum(classes.get(c, 0) for c in REAL),
        "classes": {c: classes.get(c, 0) for c in CLASSES},
    }


def _nan_inf(v):
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v


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
    """The worst failing rows and notes: each class's worst first, then the rest by margin."""
    from bpcheck.judge.compare import describe
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


SENSITIVITY_DELTAS = {"float32": (1e-5, 1e-4, 1e-3), "float64": (1e-12, 1e-10, 1e-8)}
SENSITIVITY_TARGET = {"float32": 1e-4, "float64": 1e-10}   # caught in >= 99% of plain cases (README)


def sensitivity(records):
    """Per dtype, family and tensor kind: the share of the candidate's rows that would catch a
    one-tensor relative error delta, g -> g + delta ||g*|| in any direction (caught for certain when
    delta > sensitivity + the row's own relative error: a lower bound on the share caught).
    Rows that are notes (their tolerance does not judge) are left out."""
    counts = defaultdict(lambda: [0] + [0] * 3)
    for record in records:
        if record["status"] != "ok":
            continue
        family = (record.get("meta") or {}).get("family", "plain")
        for row in record["rows"]:
            if row["class"] in NOTES or not isinstance(row.get("sensitivity"), (int, float)):
                continue
            if math.isnan(row["sensitivity"]):
                continue
            deltas = SENSITIVITY_DELTAS[row["dtype"]]
            for key in ((row["dtype"], family, row["tensor"]), (row["dtype"], family, "all"),
                        (row["dtype"], "all", row["tensor"]), (row["dtype"], "all", "all")):
                c = counts[key]
                c[0] += 1
                for k, delta in enumerate(deltas):
                    c[k + 1] += delta > row["sensitivity"] + row["rel"]
    out = []
    for (dtype, family, tensor), c in sorted(counts.items()):
        out.append({"dtype": dtype, "family": family, "tensor": tensor, "rows": c[0],
                    "caught": {f"{d:g}": c[k + 1] / c[0] for k, d in enumerate(SENSITIVITY_DELTAS[dtype])}})
    return out


def aggregate(records, meta):
    """The report dict (without environment and timing; see ``write_reports``)."""
    ok = [r for r in records if r["status"] == "ok"]
    candidate_rows = [row for r in ok for row in r["rows"]]
    oracle_rows = [row for r in ok for row in r["oracle_rows"]]
    rows = candidate_rows + oracle_rows
    oracle_whos = [o for o in ORACLE_NAMES if any(row["who"] == o for row in oracle_rows)]
    candidates = sorted({r["who"] for r in records} - set(ORACLE_NAMES)) or ["candidate"]
    whos = candidates + oracle_whos
    groups = {}
    for name, fields in GROUPINGS.items():
        groups[name] = sorted(group(rows, fields), key=_order(whos))
    dtypes = [d for d in DTYPES if any(r["spec"]["dtype"] == d for r in records)]
    dtypes += sorted({r["spec"]["dtype"] for r in records} - set(dtypes))
    status = Counter(r["status"] for r in records)
    findings = [{"case": r["case"], **f} for r in ok for f in r.get("findings", [])]
    return {
        "bpcheck_report": REPORT_VERSION,
        "candidate": candidates[0],
        "whos": whos,
        "oracle_whos": oracle_whos,
        "dtypes": dtypes,
        "counts": {"cases": len(records), **{s: status.get(s, 0) for s in ("ok", "unsupported", "error")},
                   "rows": len(candidate_rows), "oracle_rows": len(oracle_rows),
                   "cases_with_limits": sum(1 for r in ok if r.get("limits")),
                   "findings": len(findings)},
        "families": dict(Counter(r.get("meta", {}).get("family", "plain") for r in ok)),
        "coverage": {
            "losses": sorted({r["spec"]["loss"] for r in records}, key=_index(LOSSES)),
            "activations": sorted({l["activation"] for r in records for l in r["spec"]["layers"]},
                                  key=_index(ACTIVATIONS)),
            "depths": sorted({len(r["spec"]["layers"]) for r in records}),
            "widths": sorted({l["units"] for r in records for l in r["spec"]["layers"]}),
            "batches": sorted({r["batch"] for r in records}),
            "edge_grid": edge_coverage(records),
        },
        "groups": groups,
        "side_by_side": side_by_side(groups["loss_layer"], candidates[0]),
        "sensitivity": sensitivity(records),
        "failures": listed_failures(candidate_rows),
        "findings": findings[:MAX_LISTED],
        "oracle_findings": listed_failures(oracle_rows, limit=20),
        "problems": [{"case": r["case"], "status": r["status"], "stage": r.get("stage"),
                      "message": (r.get("message") or "")[:2000]}
                     for r in records if r["status"] != "ok"],
        "meta": meta,
    }


def environment(jobs=None):
    """Library versions, platform and thread counts, for the record."""
    from importlib import metadata

    import numpy as np

    from bpcheck import __version__
    from bpcheck.run.pool import SINGLE_THREAD_ENV
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
    from bpcheck.core.records import jsonable
    from bpcheck.judge.bounds import UNIT_ROUNDOFF
    from bpcheck.judge.compare import TOLERANCE
    from bpcheck.report.render import render_html, render_markdown

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

    from bpcheck.report import plots
    figures = plots.figures(report, records)
    report["figures"] = [{"id": f.id, "title": f.title} for f in figures]
    heat = next((f for f in figures if f.id.startswith("heatmap-layer")), None)
    if heat is not None:
        (out_dir / "heatmap.png").write_bytes(heat.png)
    report["timing"]["report_seconds"] = round(time.perf_counter() - start, 3)

    report = jsonable(report)
    _write(out_dir / "report.json", json.dumps(report, indent=1, allow_nan=False) + "\n")
    _write(out_dir / "report.md", render_markdown(report, extra_sections))
    _write(out_dir / "index.html", render_html(report, figures, extra_sections))
    return report


def _write(path, text):
    """Write via a temporary file and a rename: a reader never sees half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---- the command -------------------------------------------------------------
