"""The report's plots: matplotlib (Agg, no pyplot state), embedded in index.html as base64 PNG.

Per dtype, two figures (the numbers themselves are in the page's tables, including
colour-coded heatmap tables, ``bpcheck.report.render``):

- a heatmap of the median error (in u) over layer × loss, one panel per
  implementation (candidate, torch, jax);
- distributions: the error of every row with the tolerances drawn in, the
  margins with the pass/fail line at 1, the sensitivity (the smallest one-tensor
  relative error each row catches), and error growth against network depth.

Cost is kept well under a second for a thousand cases: no per-cell text, no
layout engine, 80 dpi.
"""
import base64
import html
import io
import math
from dataclasses import dataclass

from bpcheck.core.spec import LOSSES

COLORS = {"torch": "#d62728", "jax": "#1f77b4"}
CANDIDATE_COLOR = "#2ca02c"
FLOOR_CLIP = 1e-2  # errors below this many u (including exact zeros) are drawn at it
DPI = 80


@dataclass
class Figure:
    id: str
    title: str
    caption: str
    png: bytes

    def html(self):
        data = base64.b64encode(self.png).decode("ascii")
        return (f'<figure id="{html.escape(self.id)}"><img alt="{html.escape(self.title)}" '
                f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(self.title)}.</b> '
                f"{html.escape(self.caption)}</figcaption></figure>")


def _new(width, height):
    from matplotlib.figure import Figure as MplFigure
    return MplFigure(figsize=(width, height), dpi=DPI, layout=None)


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None},
                pil_kwargs={"compress_level": 1})          # zlib's default level 6 is most of the cost
    return buf.getvalue()


def _color(who, candidate):
    return CANDIDATE_COLOR if who == candidate else COLORS.get(who, "#7f7f7f")


def _finite(values):
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _short(v):
    if v is None:
        return ""
    if not math.isfinite(v):
        return "∞"
    if v == 0:
        return "0"
    if v < 0.01 or float(f"{v:.2g}") >= 100:
        return f"{v:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return f"{v:.2g}"


def _ordered(present, known):
    """``present`` in the order of ``known``, anything unknown after it, sorted."""
    return [k for k in known if k in present] + sorted(set(present) - set(known))


def _clip(label, n=22):
    return label if len(label) <= n else label[:n - 1] + "…"


# ---- heatmap -------------------------------------------------------------------

def heatmap(report, dtype):
    """Median error over layer position × loss, a panel per implementation."""
    import numpy as np
    from matplotlib.colors import LogNorm

    groups = [g for g in report["groups"]["loss_layer"] if g["dtype"] == dtype]
    if not groups:
        return None
    whos = [w for w in report["whos"] if any(g["who"] == w for g in groups)]
    losses = _ordered({g["key"]["loss"] for g in groups}, LOSSES)
    present = {g["key"]["position"] for g in groups}
    ys = sorted((p for p in present if p.startswith("layer ")), key=lambda p: int(p.split()[1]))
    ys += [p for p in ("input_grad", "loss") if p in present]
    cell = {(g["who"], g["key"]["loss"], g["key"]["position"]): g["median_u"] for g in groups}
    vmax = max([10.0] + _finite(cell.values()))
    norm = LogNorm(vmin=FLOOR_CLIP * 10, vmax=vmax)
    fig = _new(1.2 + 3.2 * len(whos), 1.4 + 0.3 * len(ys))
    fig.subplots_adjust(left=0.09, right=0.9, bottom=0.3, top=0.86, wspace=0.08)
    axes = fig.subplots(1, len(whos), squeeze=False)[0]
    image = None
    for c, who in enumerate(whos):
        grid = np.full((len(ys), len(losses)), np.nan)
        for i, y in enumerate(ys):
            for j, loss in enumerate(losses):
                v = cell.get((who, loss, y))
                if v is not None:
                    grid[i, j] = vmax if not math.isfinite(v) else max(v, FLOOR_CLIP * 10)
        image = axes[c].imshow(grid, norm=norm, cmap="viridis", aspect="auto", interpolation="nearest")
        axes[c].set_xticks(range(len(losses)), [_clip(l, 14) for l in losses], fontsize=7, rotation=35,
                           ha="right")
        axes[c].set_yticks(range(len(ys)), [_clip(y) for y in ys] if c == 0 else [""] * len(ys), fontsize=7)
        axes[c].set_title(_clip(who), fontsize=9)
    fig.colorbar(image, ax=list(axes), fraction=0.025, pad=0.02, label="median error in u")
    fig.suptitle(f"{dtype}: median error in u over layer × loss", fontsize=11)
    return Figure(f"heatmap-layer-{dtype}", f"{dtype}: median error (in u) over layer × loss",
                  "Normwise relative error against the exact truth in units of "
                  f"{dtype}'s unit roundoff, for the candidate and for torch and jax in {dtype} on the same "
                  f"cases. Values below {FLOOR_CLIP * 10:g} u share the darkest colour; blank cells have no rows. "
                  "The numbers are in the heatmap tables below.", _png(fig))


# ---- distributions ---------------------------------------------------------------

def distributions(report, rows_by_who, dtype):
    """Errors with tolerances, margins, sensitivities, and error against depth: one figure."""
    import numpy as np

    whos = [w for w in report["whos"] if rows_by_who.get((w, dtype))]
    if not whos:
        return None
    cand = report["candidate"]
    fig = _new(12, 7.4)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.94, wspace=0.2, hspace=0.42)
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)

    def logs(values, lo, hi):
        v = np.asarray([x if x is not None else np.nan for x in values], dtype=float)
        return np.log10(np.clip(np.nan_to_num(v, nan=10.0**lo, posinf=10.0**hi), 10.0**lo, 10.0**hi))
    errs = {w: [r["err_u"] for r in rows_by_who[(w, dtype)]] for w in whos}
    top = math.log10(max(_finite(v for w in whos for v in errs[w]) + [100.0])) + 0.4
    bins = np.linspace(math.log10(FLOOR_CLIP), top + 0.1, 45)
    def step(ax, values, edges, **style):          # np.histogram + stairs: one artist, not 45 patches
        counts, _ = np.histogram(values, bins=edges)
        ax.stairs(np.maximum(counts, 0.8), edges, baseline=0.8, **style)
    for w in whos:
        step(ax1, logs(errs[w], math.log10(FLOOR_CLIP), top), bins, linewidth=1.5, color=_color(w, cand),
             label=f"{w} error")
    tol = [r["tol_u"] for r in rows_by_who.get((cand, dtype), [])]
    if tol:
        step(ax1, logs(tol, math.log10(FLOOR_CLIP), top), bins, fill=True, color="#999999", alpha=0.35,
             label=f"{cand} tolerance")
    ax1.set(yscale="log", xlabel="log10 error in u (exact rows at the left edge)", ylabel="rows")
    ax1.set_title(f"{dtype}: errors and tolerances", fontsize=10)
    ax1.legend(fontsize=7)
    lo, hi = -2.0, 4.0
    for w in whos:
        step(ax2, logs([r["margin"] for r in rows_by_who[(w, dtype)]], lo, hi), np.linspace(lo - .1, hi + .1, 45),
             linewidth=1.5, color=_color(w, cand), label=w)
    ax2.axvline(0.0, color="#a00000", linewidth=1.4, label="margin 1: fails to the left")
    ax2.set(yscale="log", xlabel=f"log10 margin = tolerance ÷ error (clipped to [{lo:g}, {hi:g}])")
    ax2.set_title(f"{dtype}: margins", fontsize=10)
    ax2.legend(fontsize=7)
    sens = [r.get("sensitivity") for r in rows_by_who.get((cand, dtype), []) if r["tensor"] in ("W", "b", "input_grad")]
    if sens:
        step(ax3, logs(sens, -17, 1), np.linspace(-17, 1, 55), fill=True, color=_color(cand, cand), alpha=0.7)
        ax3.axvline(-4 if dtype == "float32" else -10, color="#555555", linestyle="--", linewidth=1.2,
                    label="1e-4 (float32) / 1e-10 (float64)")
        ax3.legend(fontsize=7)
    ax3.set(yscale="log", xlabel="log10 sensitivity: smallest one-tensor relative error caught (W, b, dC/dx)",
            ylabel="rows")
    ax3.set_title(f"{dtype}: how tight the check is", fontsize=10)
    for w in whos:
        gs = sorted((g for g in report["groups"]["depth"] if g["who"] == w and g["dtype"] == dtype),
                    key=lambda g: g["key"]["depth"])
        for stat, style in (("median_u", "-o"), ("p99_u", "--^")):
            ys = [max(g[stat], FLOOR_CLIP) if math.isfinite(g[stat]) else math.nan for g in gs]
            ax4.plot([g["key"]["depth"] for g in gs], ys, style, color=_color(w, cand), markersize=3,
                     linewidth=1.2, label=f"{w} {stat.split('_')[0]}")
    ax4.set(yscale="log", xlabel="network depth (layers)", ylabel="error in u")
    ax4.set_title(f"{dtype}: error against depth", fontsize=10)
    ax4.legend(fontsize=6, ncol=3)
    for ax in (ax1, ax2, ax3, ax4):
        ax.minorticks_off()                     # log axes' minor ticks are most of the drawing time
    return Figure(f"distributions-{dtype}", f"{dtype}: errors, margins, sensitivity and growth",
                  "Rows that are notes (kink, convention, dtype_limit) are left out. "
                  "Top left: the error of every row (tensor × case) for each implementation, with the "
                  "candidate's per-row tolerances (grey). Top right: margins; a row left of the red line fails. "
                  "Bottom left: the sensitivity of the candidate's W, b and input-gradient rows. Bottom right: "
                  "median (solid) and p99 (dashed) error against the network's depth.", _png(fig))


def figures(report, records):
    """All figures of a report, in page order."""
    from bpcheck.judge.classify import NOTES
    rows_by_who = {}
    for rec in records:
        if rec["status"] == "ok":
            for row in rec["rows"] + rec["oracle_rows"]:
                if row["class"] not in NOTES:          # a note's tolerance does not judge it: not plotted
                    rows_by_who.setdefault((row["who"], row["dtype"]), []).append(row)
    out = []
    for dtype in report["dtypes"]:
        out += [heatmap(report, dtype), distributions(report, rows_by_who, dtype)]
    return [f for f in out if f is not None]
