"""The computation graph of one case as inline SVG, each node coloured by its error in u.

    x → z₀ → a₀ → z₁ → a₁ → … → loss          (W_i and b_i feed each z_i from below)

A node's colour is its row's error against its tolerance: green passes, amber is
a kink or convention, red a real discrepancy (darker the further past the
tolerance), grey a tensor the implementation did not report. z_i is coloured by
delta_i = dC/dz_i, a_i by the forward activation, x by the input gradient. The
first wrong link (``bpcheck.diagnose.diagnose``) gets a thick outline, so the eye lands on
it. Every string is escaped (control characters too: SVG is XML); hovering a node shows its full row.
"""
import math
import html

from bpcheck.core.records import printable

from bpcheck.judge.compare import describe

_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_W, _H, _DX = 76, 40, 96
_GREY, _GREEN, _AMBER = "#e0e0e0", "#a5d6a7", "#ffd54f"
_REDS = ["#ffcdd2", "#ef9a9a", "#e57373", "#e53935", "#b71c1c"]


def colour(row):
    """Fill colour for a row (None: not reported)."""
    if row is None:
        return _GREY
    if row["class"] == "pass":
        return _GREEN
    if row["class"] not in ("bug", "precision"):
        return _AMBER
    ratio = row["err_u"] / row["tol_u"] if row["tol_u"] > 0 else math.inf
    if math.isnan(ratio):
        ratio = math.inf
    return _REDS[sum(ratio > t for t in (10, 100, 1e4, 1e6))]   # error ÷ tolerance: 10, 100, 1e4, 1e6


def _err(row):
    if row is None:
        return "not reported"
    return f"{row['err_u']:.2g} u" if math.isfinite(row["err_u"]) else "NaN/inf"


def _node(cx, cy, label, row, first, uid, note=None, width=_W):
    """A rounded box: the label, an optional note line, the error in u; the row as its tooltip."""
    fill = colour(row)
    text_fill = "#fff" if fill in _REDS[3:] else "#000"
    is_first = row is not None and row is first
    stroke = ' stroke="#000" stroke-width="3.5"' if is_first else ' stroke="#555"'
    if row is not None and row["class"] != "pass":
        tip = describe(row)
    else:
        tip = f"{label}: {_err(row)}" + (f" (tolerance {row['tol_u']:.3g} u)" if row else "")
    lines = [(label, 14)] + ([(note, 10)] if note else []) + [(_err(row), 10)]
    height = _H + 12 * (len(lines) - 2)
    out = [f'<g class="node" id="{uid}"><title>{_escape(tip)}</title>',
           f'<rect x="{cx - width / 2}" y="{cy - height / 2}" width="{width}" height="{height}" rx="8" '
           f'fill="{fill}"{stroke}/>']
    y = cy - height / 2 + 16
    for text, size in lines:
        out.append(f'<text x="{cx}" y="{y}" text-anchor="middle" font-size="{size}" '
                   f'fill="{text_fill}">{_escape(text)}</text>')
        y += size + 3
    out.append("</g>")
    if is_first:
        out.append(f'<text x="{cx}" y="{cy - height / 2 - 6}" text-anchor="middle" font-size="11" '
                   f'font-weight="bold" fill="#b71c1c">first wrong</text>')
    return "".join(out)


def _arrow(x1, y1, x2, y2, marker):
    return (f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555" stroke-width="1.5" '
            f'marker-end="url(#{marker})"/>')


def graph_svg(case, rows, first=None, *, uid="bpg"):
    """An ``<svg>`` string: the case's computation graph coloured by ``rows``."""
    uid = "".join(c for c in uid if c.isalnum() or c in "-_") or "bpg"
    found = {(r["layer"], r["tensor"]): r for r in rows}
    layers = case.spec["layers"]
    y_main, y_param = 60, 150
    width, height = max(_DX * (2 * len(layers) + 2) + 80, 760), 215
    marker = f"{uid}-arrow"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="bpcheck-graph" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" font-family="sans-serif" role="img" '
             f'aria-label="{_escape(f"computation graph of case {case.id}")}">',
             f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/>'
             '</marker></defs>']
    x = 10 + _DX / 2
    parts.append(_node(x, y_main, "x", found.get((None, "input_grad")), first, f"{uid}-x", note="dC/dx"))
    for i, layer in enumerate(layers):
        xz, xa = x + _DX, x + 2 * _DX
        parts.append(_arrow(x + _W / 2, y_main, xz - _W / 2, y_main, marker))
        parts.append(_node(xz, y_main, f"z{i}".translate(_SUB), found.get((i, "delta")), first,
                           f"{uid}-z{i}", note="δ = dC/dz"))
        for side, tensor in ((-1, "W"), (1, "b")):
            px = xz + side * (_W / 2 + 4)
            parts.append(_arrow(px, y_param - _H / 2, xz + side * 12, y_main + _H / 2 + 6, marker))
            parts.append(_node(px, y_param, f"{tensor}{i}".translate(_SUB), found.get((i, tensor)),
                               first, f"{uid}-{tensor}{i}"))
        parts.append(_arrow(xz + _W / 2, y_main, xa - _W / 2, y_main, marker))
        parts.append(_node(xa, y_main, f"a{i}".translate(_SUB), found.get((i, "activation")), first,
                           f"{uid}-a{i}", note=layer["activation"]))
        x = xa
    parts.append(_arrow(x + _W / 2, y_main, x + _DX - _W / 2, y_main, marker))
    loss_width = max(_W, 6 * len(case.spec["loss"]) + 12)
    parts.append(_node(x + _DX + (loss_width - _W) / 2, y_main, "loss", found.get((None, "loss")), first,
                       f"{uid}-loss", note=case.spec["loss"], width=loss_width))
    legend = [(_GREEN, "within tolerance"), (_AMBER, "kink / convention"), (_REDS[1], "wrong"),
              (_REDS[4], "wrong > 10⁶ × tolerance"), (_GREY, "not reported")]
    for k, (fill, text) in enumerate(legend):
        lx = 10 + k * 150
        parts.append(f'<rect x="{lx}" y="{height - 18}" width="12" height="12" fill="{fill}" stroke="#555"/>'
                     f'<text x="{lx + 17}" y="{height - 8}" font-size="11">{_escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _escape(text):
    return html.escape(printable(text), quote=True)
