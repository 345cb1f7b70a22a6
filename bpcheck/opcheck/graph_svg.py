"""A whole network's graph (``bpcheck.ops.graph``) as inline SVG, each box coloured by its judgement.

    leaves and constants | layer 1 | layer 2 | ... | the output

Leaves (inputs, parameters) and constants stand in the left column; every node stands in the column of
its longest path from them (1 + the deepest of its inputs), so an edge always points right. Within a
column, boxes are ordered and placed near the mean height of their inputs (a one-sweep barycentre
layout: deterministic, no layout library, no system binary). Edges are arrows from a value to each node
reading it (dashed from a constant).

A box shows a node's name and op (a leaf's name and kind) and is coloured by the rows of a judged case
(``bpcheck.opcheck.graph_check.judge_graph_case``) that belong to it:

- a node: when the case was judged node by node (rows of scope "node"), its rows (``"node"`` is it) and
  the sum row of its delta if several nodes read it (``"value"`` is it); otherwise its whole-graph
  ``delta <node>`` row (and ``out`` for the output node);
- a leaf: its whole-graph ``d<leaf>`` row, the node-scope sum row of its gradient, and a row saying the
  candidate overwrote it.

Green: every such row passes with a margin of at least ``NEAR`` (the tolerance over the error); amber:
passes, but nearer the tolerance than that (or accepted as a kink or tie); red: a row fails; grey: no
row judges it (constants, or a candidate that raised). The culprit (the first wrong node or value) gets
a thick outline. Each box's ``<title>`` tooltip names its worst row with err_u / tol_u. Every string is
escaped (control characters too: SVG is XML); the same input gives the same bytes.
"""
import html
import math

from bpcheck.core.records import printable

__all__ = ["svg", "box_rows", "box_status", "NEAR", "COLOURS"]

NEAR = 4.0                       # a margin (tolerance / error) below this is "near the tolerance"
COLOURS = {"pass": "#a5d6a7", "near": "#ffd54f", "fail": "#e57373", "none": "#eeeeee"}
WORDS = {"pass": "passes (margin >= 4)", "near": "passes near the tolerance (margin < 4)", "fail": "fails",
         "none": "not judged"}
_H, _GAP_Y, _GAP_X, _PAD, _TOP = 38, 14, 56, 12, 44
_LEGEND = 17 * 4 + sum(6.5 * len(w) + 24 for w in WORDS.values())     # the legend's width
_MAX_CHARS = 28                  # a longer label is cut in its box (the tooltip has it whole)


def _esc(text):
    return html.escape(printable(text), quote=True)


def _num(x):
    """A coordinate with one decimal: the same float always prints the same."""
    return f"{x:.1f}"


def _fmt(x):
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}"


def box_rows(graph, rows):
    """{value name: [rows]} for every leaf, constant and node of ``graph`` (see the module docstring)."""
    found = {name: [] for name in graph.leaves + graph.constants + tuple(n.name for n in graph.nodes)}
    local = any(r.get("scope") == "node" for r in rows)
    nodes = {n.name for n in graph.nodes}
    for r in rows:
        name = r.get("tensor", "")
        delta = name[len("delta "):] if name.startswith("delta ") and name[len("delta "):] in nodes else None
        if r.get("scope") == "node":
            key = r.get("node") or r.get("value")
        elif delta is not None or name == "out":
            key = None if local else (delta or graph.output)    # judged node by node: those rows instead
        elif name.startswith("d") and name[1:] in graph.leaves:
            key = name[1:]
        elif name in found and name not in nodes:               # "overwrote its input"
            key = name
        else:
            key = None                                          # "call", "grads": the whole candidate
        if key in found:
            found[key].append(r)
    return found


def box_status(rows):
    """"fail", "near", "pass" or "none" (no rows) for the rows of one box."""
    if not rows:
        return "none"
    if any(r.get("status") == "bug" for r in rows):
        return "fail"
    if any(r.get("status") in ("kink", "tie") or _margin(r) < NEAR for r in rows):
        return "near"
    return "pass"


def _margin(row):
    m = row.get("margin")
    if m is None:
        return math.inf
    m = float(m)
    return -math.inf if math.isnan(m) else m


def _worst(rows):
    """The row with the least margin (a failing row first)."""
    return min(rows, key=lambda r: (r.get("status") != "bug", _margin(r)), default=None)


def _tooltip(label, rows, status):
    worst = _worst(rows)
    if worst is None:
        return f"{label}: not judged"
    if "err_u" in worst:
        detail = (f"worst {worst['tensor']}: err {_fmt(worst['err_u'])} u / tol {_fmt(worst['tol_u'])} u "
                  f"(margin {_fmt(worst.get('margin'))})")
    else:
        detail = f"worst {worst['tensor']}: {worst.get('message', '')}"
    return f"{label}: {WORDS[status]}; {len(rows)} row{'s' * (len(rows) != 1)}; {detail}"


def _cut(text):
    text = printable(text)
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS - 1] + "…"


def _layout(graph):
    """(columns: [[name]], y: {name: centre}) -- leaves and constants in column 0, each node in column
    1 + the deepest column of its inputs, ordered and placed near the mean height of their inputs."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    sources = graph.leaves + graph.constants
    first_reader = {v: min((order[n.name] for n in graph.nodes if v in n.inputs.values()), default=len(order))
                    for v in sources}
    column = {v: 0 for v in sources}
    for n in graph.nodes:
        column[n.name] = 1 + max((column[v] for v in n.inputs.values() if v in column), default=0)
    depth = max(column.values())
    columns = [sorted((v for v in sources), key=lambda v: (first_reader[v], sources.index(v)))]
    columns += [[n.name for n in graph.nodes if column[n.name] == c] for c in range(1, depth + 1)]
    step = _H + _GAP_Y
    y = {v: _TOP + _H / 2 + i * step for i, v in enumerate(columns[0])}
    inputs = {n.name: list(n.inputs.values()) for n in graph.nodes}
    for c in range(1, depth + 1):
        want = {v: sum(y[i] for i in inputs[v]) / len(inputs[v]) for v in columns[c]}
        columns[c].sort(key=lambda v: (want[v], order[v]))
        placed, low = [], _TOP + _H / 2
        for v in columns[c]:
            placed.append(max(want[v], low))
            low = placed[-1] + step
        shift = sum(want[v] - p for v, p in zip(columns[c], placed)) / len(placed)   # back toward the wants
        shift = max(shift, _TOP + _H / 2 - placed[0])
        for v, p in zip(columns[c], placed):
            y[v] = p + shift
    return columns, y


def svg(case, rows, culprit, *, uid="g"):
    """An ``<svg>`` string: ``case.graph`` laid out left to right, coloured by ``rows`` (the case's
    judgement), ``culprit`` (a dict with "node", or None) outlined. ``uid`` prefixes the ids, so several
    drawings can share one page."""
    uid = "".join(c for c in str(uid) if c.isalnum() or c in "-_") or "g"
    graph = case.graph
    attributed = box_rows(graph, rows)
    ops = {n.name: n.op for n in graph.nodes}
    kinds = {**{v: "input" for v in graph.inputs}, **{v: "param" for v in graph.params},
             **{v: "constant" for v in graph.constants}}
    columns, y = _layout(graph)
    widths = [max(96, max(7.2 * max(len(_cut(v)), len(_cut(ops.get(v, kinds.get(v, ""))))) + 20 for v in col))
              for col in columns]
    lefts, x = [], _PAD
    for w in widths:
        lefts.append(x)
        x += w + _GAP_X
    width = max(x - _GAP_X + _PAD, _LEGEND + _PAD)
    height = max(y.values()) + _H / 2 + 40
    where = {v: (lefts[c], widths[c]) for c, col in enumerate(columns) for v in col}
    marker = f"{uid}-arrow"
    culprit_name = (culprit or {}).get("node")
    title = f"{case.describe()}: {len(graph.nodes)} nodes, {len(graph.leaves)} leaves, {len(graph.constants)} constants"
    boxed = {id(r) for found in attributed.values() for r in found}
    title += "".join(f"; {r['tensor']}: {r.get('message', '')}" for r in rows      # what no box shows
                     if r.get("status") == "bug" and id(r) not in boxed)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="bpcheck-network" viewBox="0 0 {_num(width)} '
           f'{_num(height)}" width="{_num(width)}" height="{_num(height)}" font-family="sans-serif" role="img" '
           f'aria-label="{_esc("network graph of " + case.describe())}">',
           f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>',
           f'<text x="{_PAD}" y="18" font-size="12">{_esc(title)}</text>']
    for n in graph.nodes:                                       # edges first: boxes are drawn over them
        x2 = where[n.name][0]
        y2 = y[n.name]
        for slot, v in n.inputs.items():
            left, w = where[v]
            x1, y1 = left + w, y[v]
            bend = max((x2 - x1) / 2, 20)
            dash = ' stroke-dasharray="4 3"' if v in graph.constants else ""
            out.append(f'<path d="M {_num(x1)} {_num(y1)} C {_num(x1 + bend)} {_num(y1)} {_num(x2 - bend)} '
                       f'{_num(y2)} {_num(x2)} {_num(y2)}" fill="none" stroke="#888" stroke-width="1.2"{dash} '
                       f'marker-end="url(#{marker})"><title>{_esc(f"{v} -> {n.name}.{slot}")}</title></path>')
    for c, col in enumerate(columns):
        for v in col:
            left, w = where[v]
            top = y[v] - _H / 2
            status = box_status(attributed[v])
            label = f"{v} ({ops[v]})" if v in ops else f"{v} ({kinds[v]})"
            thick = v == culprit_name
            stroke = ' stroke="#000" stroke-width="4"' if thick else ' stroke="#555" stroke-width="1"'
            dash = ' stroke-dasharray="4 3"' if v in graph.constants else ""
            mark = ' data-culprit="true"' if thick else ""
            out.append(f'<g class="box" data-name="{_esc(v)}" data-status="{status}"{mark}>'
                       f'<title>{_esc(_tooltip(label, attributed[v], status))}</title>'
                       f'<rect x="{_num(left)}" y="{_num(top)}" width="{_num(w)}" height="{_H}" rx="7" '
                       f'fill="{COLOURS[status]}"{stroke}{dash}/>'
                       f'<text x="{_num(left + w / 2)}" y="{_num(top + 16)}" text-anchor="middle" font-size="12" '
                       f'font-weight="bold">{_esc(_cut(v))}</text>'
                       f'<text x="{_num(left + w / 2)}" y="{_num(top + 31)}" text-anchor="middle" font-size="10">'
                       f'{_esc(_cut(ops.get(v, kinds.get(v))))}</text></g>')
            if thick:
                out.append(f'<text x="{_num(left + w / 2)}" y="{_num(top - 5)}" text-anchor="middle" font-size="11" '
                           'font-weight="bold" fill="#b71c1c">first wrong</text>')
    lx = _PAD
    for status in ("pass", "near", "fail", "none"):
        out.append(f'<rect x="{_num(lx)}" y="{_num(height - 22)}" width="12" height="12" fill="{COLOURS[status]}" '
                   f'stroke="#555"/><text x="{_num(lx + 17)}" y="{_num(height - 12)}" font-size="11">'
                   f'{_esc(WORDS[status])}</text>')
        lx += 17 + 6.5 * len(WORDS[status]) + 24
    out.append("</svg>")
    return "\n".join(out)
