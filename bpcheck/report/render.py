"""Render a report dict (``bpcheck.report.report.aggregate``) as Markdown and as one self-contained HTML page.

Every string that reaches the page goes through ``html.escape`` (``e``), and
every Markdown table cell through ``_md_cell`` (backslash, pipe, newline and the
characters of an HTML tag escaped): a candidate's message or key name is text,
never markup, in either file. A ``validate`` report opens with the verdict, the
first wrong link, the computation graph and the repro command; the aggregate
tables and plots follow.
"""
import html
import json
import math

from bpcheck.core.records import printable
from bpcheck.core.spec import ACTIVATIONS, LOSSES

POSITIONS = tuple(f"layer {i}" for i in range(64)) + ("input_grad", "loss")

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


def _flags(meta):
    """The run's flags: meta["flags"], or meta itself for callers that keep them at the top."""
    if isinstance(meta.get("flags"), dict):
        return meta["flags"]
    return {k: v for k, v in meta.items() if k not in ("timing", "command")}


def _index(seq):
    return lambda v: (seq.index(v) if v in seq else len(seq), v)


RULE = ("Every row is one tensor (the loss, a layer's activation, delta = dC/dz, dC/db or dC/dW, or the input "
        "gradient) of one case, compared with the exact values (python-flint ball arithmetic, certified). "
        "Its error is the normwise relative error ‖g − g*‖/‖g*‖ in units of the dtype's unit roundoff u "
        "(float32 2⁻²⁴, float64 2⁻⁵³). Its tolerance is the rounding error the definitions themselves make in "
        "the case's dtype, carried through the forward pass and BP1–BP4 (a running error bound), times the "
        "safety factor {safety}; torch and jax are judged by the same rule and never change it. "
        "Margin = tolerance ÷ error (below 1 fails); sensitivity = the smallest one-tensor relative error "
        "that would be caught. A failing row is classified by evidence: dtype_limit, kink and convention are "
        "notes; precision and bug fail.")


def fmt(v, digits=3):
    """A number for a table cell: 3 significant digits, ∞ for infinity, — for none."""
    if v is None:
        return "—"
    if isinstance(v, dict):
        return ", ".join(f"{k} {fmt(x, digits)}" for k, x in v.items())
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


STAT_HEADERS = ("rows", "median u", "p99 u", "max u", "median tol u", "min margin", "median sensitivity",
                "failures", "bug", "precision", "kink", "convention", "dtype limit")


def stat_cells(g):
    return [str(g["n"]), fmt(g["median_u"]), fmt(g["p99_u"]), fmt(g["max_u"]), fmt(g["median_tol_u"]),
            fmt(g["min_margin"], 2), fmt(g["median_sensitivity"], 2), str(g["failures"])] + \
        [str(g["classes"].get(c, 0)) for c in ("bug", "precision", "kink", "convention", "dtype_limit")]


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
    grid = report["coverage"].get("edge_grid") or {}
    if grid:
        line += "; edge grid met: " + ", ".join(f"{name} {g['met']}/{g['of']}" for name, g in grid.items())
    if t.get("wall_seconds"):
        line += f"; wall time {fmt(t['wall_seconds'])} s with {flags.get('jobs', '?')} job(s)"
    if t.get("cases_per_second"):
        line += f", {fmt(t['cases_per_second'])} cases/s"
    return line


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
    """Text for a Markdown table cell or a line: Markdown's specials backslash-escaped, & < > as
    entities, newlines as spaces -- a candidate's string cannot become markup or a tag."""
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.translate(str.maketrans({c: "\\" + c for c in "\\`*_[]|#!"})).replace("\n", " ")


def md_text(text):
    """Several lines of text, each escaped (``_md_cell``), kept apart by hard line breaks."""
    return "  \n".join(_md_cell(line) if line.strip() else "" for line in str(text).split("\n"))


def sensitivity_rows(report, dtype):
    """(headers, rows) of the sensitivity table of ``dtype``: family x tensor, share caught per delta."""
    entries = [e for e in report.get("sensitivity", []) if e["dtype"] == dtype]
    if not entries:
        return None, []
    deltas = list(entries[0]["caught"])
    headers = ["family", "tensor", "rows"] + [f"δ = {d} caught" for d in deltas]
    order = {"all": 0, "plain": 1}
    rows = [[e["family"], e["tensor"], str(e["rows"])] + [f"{100 * e['caught'][d]:.1f}%" for d in deltas]
            for e in sorted(entries, key=lambda e: (order.get(e["family"], 2), e["family"], e["tensor"] != "all",
                                                    e["tensor"]))
            if e["tensor"] == "all" or e["family"] in ("all", "plain")]
    return headers, rows


SENSITIVITY_TEXT = ("The share of the candidate's rows (tensor × case) on which a one-tensor relative error δ, "
                    "added in any direction, would be caught: for certain where δ exceeds the row's sensitivity "
                    "plus its own error, so these shares are lower bounds. Per tensor for all families and for "
                    "plain cases, and per family for all tensors; notes (kink, convention, dtype_limit) left out.")


def md_table(headers, rows):
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_rows(items, empty="None."):
    """Failing rows as list items: 'case: description', every line escaped."""
    if not items:
        return [empty]
    return [f"- {md_text(f['case'] + ': ' + f['description'])}" for f in items]


def render_markdown(report, extra_sections=()):
    cand = report["candidate"]
    out = [f"# bpcheck report: {_md_cell(cand)}" + (" beside torch and jax" if report["oracle_whos"] else ""),
           "", f"Generated {report['generated']}. " + _md_cell(summary_line(report)) + ".", ""]
    for title, markdown, _ in extra_sections:       # a validate run: the verdict and diagnosis first
        out += [f"## {_md_cell(title)}", "", markdown.rstrip(), ""]
    out += [_md_cell(RULE.format(safety=fmt(report["tolerance"]["safety"]["value"]))), "", "## Summary", ""]
    out.append(md_table(["dtype", "who"] + list(STAT_HEADERS),
                        [[g["dtype"], g["who"]] + stat_cells(g) for g in report["groups"]["summary"]]))
    if report["oracle_whos"]:
        out += ["", "## Side by side: candidate ÷ framework (median error ratio)", "",
                f"Each cell is {_md_cell(cand)}'s median error divided by the framework's median error on the "
                "same rows (1 = as accurate; below 1 = more accurate; both exact counts as 1).", ""]
        for dtype in report["dtypes"]:
            for oracle in report["oracle_whos"]:
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
    out += ["## Sensitivity: what the check would catch", "", _md_cell(SENSITIVITY_TEXT), ""]
    for dtype in report["dtypes"]:
        headers, rows = sensitivity_rows(report, dtype)
        if rows:
            out += [f"### {dtype}", "", md_table(headers, rows), ""]
    out += ["## Failing rows and notes of the candidate (worst first)", ""] + _md_rows(report["failures"])
    out += ["", "## Framework oracle findings (torch or jax beyond the same tolerance)", ""]
    out += _md_rows(report["oracle_findings"])
    out += ["", "## Cases not judged", ""]
    out += _md_rows([{"case": p["case"], "description": f"{p['status']} ({p['stage']}): {p['message'][:300]}"}
                     for p in report["problems"]])
    out += ["", "## Tolerances", "",
            md_table(["name", "value", "reason"],
                     [[k, fmt(v["value"]), v["reason"]] for k, v in report["tolerance"].items()]),
            "", "## Environment", ""]
    env = report["environment"]
    out.append(md_table(["library", "version"], [[k, v or "—"] for k, v in env["libraries"].items()]))
    out += ["", md_text(f"platform: {env['platform']}\nthreads: {json.dumps(env['threads'])}\n"
                        f"flags: {json.dumps(_flags(report['meta']))}\ncommand: {report['meta'].get('command', '')}"),
            ""]
    return "\n".join(out).rstrip() + "\n"


# ---- HTML --------------------------------------------------------------------

def e(text):
    """Escape anything for HTML text and attribute values (control characters shown as escapes)."""
    return html.escape(printable(text), quote=True)


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.4em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:12.5px}
th,td{border:1px solid #ddd;padding:2px 7px;text-align:right;white-space:nowrap}th{background:#f3f3f3}
td.k,th.k{text-align:left}tr.cand td{background:#fbfbf0}
figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:13px}code,pre{font-size:12.5px}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em}
nav a{margin-right:1em}.note{color:#555}h1 code,h2 code,h3 code{font-size:inherit}
.verdict{font-size:1.3em;font-weight:700}.pass{color:#070}.fail{color:#a00}.error{color:#a60}
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
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# viridis at 9 stops: the heatmap tables' colour for log10(error in u) from -1 to 7
_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")


def _heat_colour(v):
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
        return None
    x = 8.0 if math.isinf(v) else min(max(math.log10(max(v, 1e-1)) + 1, 0.0), 8.0)
    return _VIRIDIS[int(round(x))]


def heat_table(report, dtype, grouping, who):
    """Median error in u over (layer or activation) × loss for ``who``, cells coloured on a log scale."""
    field = GROUPINGS[grouping][1]
    groups = [g for g in report["groups"][grouping] if g["dtype"] == dtype and g["who"] == who]
    if not groups:
        return ""
    losses = sorted({g["key"]["loss"] for g in groups}, key=_index(LOSSES))
    keys = sorted({g["key"][field] for g in groups}, key=_index(POSITIONS if field == "position" else ACTIVATIONS))
    cell = {(g["key"][field], g["key"]["loss"]): g["median_u"] for g in groups}
    head = "".join(f"<th>{e(l)}</th>" for l in losses)
    body = []
    for k in keys:
        cells = []
        for loss in losses:
            v = cell.get((k, loss))
            colour = _heat_colour(v)
            dark = colour in _VIRIDIS[:5]
            style = f' style="background:{colour};color:{"#fff" if dark else "#000"}"' if colour else ""
            cells.append(f"<td{style}>{e(fmt(v))}</td>")
        body.append(f'<tr><td class="k">{e(k)}</td>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table><thead><tr><th class="k">{e(field)}</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _verdict_html(verdict):
    """The validate verdict line, first on the page."""
    code = verdict.get("exit_code")
    word, css = {0: ("PASS", "pass"), 1: ("FAIL", "fail")}.get(code, ("ERROR", "error"))
    classes = ", ".join(f"{k} {v}" for k, v in verdict.get("classes", {}).items()) or "none"
    return (f'<p class="verdict {css}">verdict: {word} (exit {e(code)})</p>'
            f"<p>{e(verdict.get('checked'))} cases checked of {e(verdict.get('cases'))}; failing cases "
            f"{e(verdict.get('failed'))}; classes: {e(classes)}.</p>")


def render_html(report, figures=(), extra_sections=()):
    cand = report["candidate"]
    is_cand = lambda col: lambda row: row[col] == cand  # noqa: E731
    title = f"bpcheck report: {cand}" + (" beside torch and jax" if report["oracle_whos"] else "")
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">',
             f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f'<p class="note">Generated {e(report["generated"])}. {e(summary_line(report))}.</p>']
    verdict = report["meta"].get("verdict")
    if verdict:
        parts.append(_verdict_html(verdict))
    for heading, _, fragment in extra_sections:     # a validate run: the diagnosis before the tables
        parts += [f"<h2>{e(heading)}</h2>", fragment]  # the fragment's author escaped it
    parts += ['<nav><a href="#summary">Summary</a><a href="#plots">Plots</a>'
              + ('<a href="#side">Side by side</a>' if report["oracle_whos"] else "")
              + "".join(f'<a href="#{e(d)}">{e(d)} tables</a>' for d in report["dtypes"])
              + '<a href="#failures">Failures</a><a href="#env">Environment</a></nav>',
              '<h2 id="summary">Summary</h2>',
              f"<p>{e(RULE.format(safety=fmt(report['tolerance']['safety']['value'])))}</p>",
              html_table(["dtype", "who"] + list(STAT_HEADERS),
                         [[g["dtype"], g["who"]] + stat_cells(g) for g in report["groups"]["summary"]],
                         first_cols=2, highlight=is_cand(1)),
              '<h2 id="plots">Plots</h2>']
    parts += [fig.html() for fig in figures]
    for dtype in report["dtypes"]:
        for grouping, what in (("loss_layer", "layer"), ("loss_activation", "activation")):
            table = heat_table(report, dtype, grouping, cand)
            if table:
                parts += [f"<h3>{e(dtype)}: {e(cand)}'s median error in u over {e(what)} × loss</h3>", table]
    if report["oracle_whos"]:
        parts += ['<h2 id="side">Side by side: candidate ÷ framework (median error ratio)</h2>',
                  f"<p>Each cell: <code>{e(cand)}</code>'s median error ÷ the framework's median error on the "
                  "same rows; 1 = as accurate, below 1 = more accurate, both exact counts as 1.</p>"]
        for dtype in report["dtypes"]:
            for oracle in report["oracle_whos"]:
                positions, rows = ratio_table(report, dtype, oracle)
                if rows:
                    parts += [f"<h3>{e(dtype)}: {e(cand)} ÷ {e(oracle)}</h3>",
                              html_table(["loss"] + positions, [[l] + cells for l, cells in rows])]
    for dtype in report["dtypes"]:
        parts.append(f'<h2 id="{e(dtype)}">{e(dtype)}</h2>')
        for grouping, heading, first in TABLES:
            rows = [keys + [who] + stat_cells(g) for keys, who, g in table_rows(report, grouping, dtype)]
            parts += [f"<h3>{e(heading)}</h3>",
                      html_table([first, "who"] + list(STAT_HEADERS), rows, first_cols=2, highlight=is_cand(1))]
    parts += ['<h2 id="sensitivity">Sensitivity: what the check would catch</h2>', f"<p>{e(SENSITIVITY_TEXT)}</p>"]
    for dtype in report["dtypes"]:
        headers, rows = sensitivity_rows(report, dtype)
        if rows:
            parts += [f"<h3>{e(dtype)}</h3>", html_table(headers, rows, first_cols=2)]
    parts += ['<h2 id="failures">Failing rows and notes of the candidate (worst first)</h2>',
              _html_failures(report["failures"]),
              "<h2>Framework oracle findings</h2>", _html_failures(report["oracle_findings"]),
              "<h2>Cases not judged</h2>",
              html_table(["case", "status", "stage", "message"],
                         [[p["case"], p["status"], p["stage"] or "", p["message"][:500]]
                          for p in report["problems"]], first_cols=4) if report["problems"] else "<p>None.</p>"]
    env = report["environment"]
    parts += ['<h2 id="env">Tolerances and environment</h2>',
              html_table(["name", "value", "reason"],
                         [[k, fmt(v["value"]), v["reason"]] for k, v in report["tolerance"].items()]),
              html_table(["library", "version"], [[k, v or "—"] for k, v in env["libraries"].items()]),
              f"<p>Platform {e(env['platform'])}.</p>",
              f"<pre>threads: {e(json.dumps(env['threads']))}\nflags: "
              f"{e(json.dumps(_flags(report['meta'])))}\ncommand: "
              f"{e(report['meta'].get('command', ''))}\ntiming: {e(json.dumps(report['timing']))}</pre>",
              "</body></html>\n"]
    return "\n".join(parts)


def _html_failures(failures):
    if not failures:
        return "<p>None.</p>"
    return "<ul>" + "".join(f"<li><code>{e(f['case'])}</code><pre>{e(f['description'])}</pre></li>"
                            for f in failures) + "</ul>"
