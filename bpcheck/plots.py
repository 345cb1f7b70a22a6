"""The report's plots: matplotlib (Agg, no pyplot state), embedded in index.html as base64 PNG.

- heatmaps of the median and p99 error (in u) over layer × loss and
  activation × loss, one panel per implementation (candidate, torch, jax), per dtype;
- histograms of the error distribution per implementation, with the tolerances
  drawn in, and of the margins with the pass/fail line at 1;
- error growth against network depth and against layer width.
"""
import base64
import html
import io
import math
from dataclasses import dataclass

from bpcheck.spec import ACTIVATIONS, LOSSES

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
    return MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
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


# ---- heatmaps ----------------------------------------------------------------

def heatmap(report, dtype, grouping):
    """Median and p99 error over (position or activation) × loss, a panel per implementation."""
    import numpy as np
    from matplotlib.colors import LogNorm

    field = {"loss_layer": "position", "loss_activation": "activation"}[grouping]
    groups = [g for g in report["groups"][grouping] if g["dtype"] == dtype]
    if not groups:
        return None
    whos = [w for w in report["whos"] if any(g["who"] == w for g in groups)]
    losses = _ordered({g["key"]["loss"] for g in groups}, LOSSES)
    if field == "position":
        present = {g["key"]["position"] for g in groups}
        ys = sorted((p for p in present if p.startswith("layer ")), key=lambda p: int(p.split()[1]))
        ys += [p for p in ("input_grad", "loss") if p in present]
    else:
        ys = _ordered({g["key"]["activation"] for g in groups}, ACTIVATIONS)
    cell = {(g["who"], g["key"]["loss"], g["key"][field]): g for g in groups}
    values = _finite(g[s] for g in groups for s in ("median_u", "p99_u"))
    vmax = max([10.0] + values)
    norm = LogNorm(vmin=FLOOR_CLIP * 10, vmax=vmax)
    fig = _new(3.2 + 3.0 * len(whos), 1.6 + 2 * (0.34 * len(ys) + 0.9))
    axes = fig.subplots(2, len(whos), squeeze=False)
    image = None
    for r, stat in enumerate(("median_u", "p99_u")):
        for c, who in enumerate(whos):
            ax = axes[r][c]
            grid = np.full((len(ys), len(losses)), np.nan)
            for i, y in enumerate(ys):
                for j, loss in enumerate(losses):
                    g = cell.get((who, loss, y))
                    if g is not None:
                        v = g[stat]
                        grid[i, j] = vmax if not math.isfinite(v) else max(v, FLOOR_CLIP * 10)
            image = ax.imshow(grid, norm=norm, cmap="viridis", aspect="auto")
            for i, y in enumerate(ys):
                for j, loss in enumerate(losses):
                    g = cell.get((who, loss, y))
                    if g is not None:
                        light = np.isfinite(grid[i, j]) and norm(grid[i, j]) < 0.55
                        ax.text(j, i, _short(g[stat]), ha="center", va="center", fontsize=7,
                                color="white" if light else "black")
            ax.set_xticks(range(len(losses)), [_clip(l) for l in losses], fontsize=7, rotation=30,
                          ha="right")
            ax.set_yticks(range(len(ys)), [_clip(y) for y in ys] if c == 0 else [""] * len(ys), fontsize=8)
            ax.set_title(f"{_clip(who)}: {'median' if r == 0 else 'p99'} error", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label="error in u (log scale)")
    what = "layer" if field == "position" else "activation"
    fig.suptitle(f"{dtype}: error in u over {what} × loss", fontsize=12)
    return Figure(f"heatmap-{'layer' if field == 'position' else 'activation'}-{dtype}",
                  f"{dtype}: error (in u) over {what} × loss",
                  "Median (top) and p99 (bottom) normwise relative error against the high-precision "
                  f"truth in units of {dtype}'s unit roundoff, for the candidate and for torch and jax in "
                  f"{dtype} on the same cases. Values below {FLOOR_CLIP * 10:g} u share the darkest colour; "
                  "blank cells have no rows.", _png(fig))


# ---- distributions -----------------------------------------------------------

def histograms(report, rows_by_who, dtype):
    import numpy as np

    whos = [w for w in report["whos"] if rows_by_who.get((w, dtype))]
    if not whos:
        return None
    cand = report["candidate"]
    errs = {w: [r["err_u"] for r in rows_by_who[(w, dtype)]] for w in whos}
    finite = _finite(v for w in whos for v in errs[w])
    top = math.log10(max(finite + [100.0]))
    bins = np.linspace(math.log10(FLOOR_CLIP), top + 0.5, 50)
    fig = _new(12, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    for w in whos:
        x = np.log10(np.clip(np.asarray(errs[w], dtype=float), FLOOR_CLIP, 10 ** (top + 0.4)))
        ax1.hist(x, bins=bins, histtype="step", linewidth=1.6, color=_color(w, cand), label=f"{w} error")
    tol = np.log10(np.clip([r["tol_u"] for r in rows_by_who.get((cand, dtype), [])], FLOOR_CLIP, None))
    if len(tol):
        ax1.hist(tol, bins=bins, color="#999999", alpha=0.35, label=f"{cand} tolerance (per row)")
        ax1.axvline(float(np.median(tol)), color="#555555", linestyle="--", linewidth=1.2,
                    label="median tolerance")
    ax1.set_yscale("log")
    ax1.set_xlabel(f"log10 error in u (≤ {FLOOR_CLIP:g} u, exact included, at the left edge)")
    ax1.set_ylabel("rows")
    ax1.set_title(f"{dtype}: error distribution", fontsize=11)
    ax1.legend(fontsize=8)
    lo, hi = -2.0, 4.0  # log10 margins drawn; beyond, at the edges (exact rows: infinite margin)
    mbins = np.linspace(lo - 0.1, hi + 0.1, 49)
    for w in whos:
        m = np.asarray([r["margin"] for r in rows_by_who[(w, dtype)]], dtype=float)
        x = np.log10(np.clip(np.nan_to_num(m, nan=10.0**lo, posinf=10.0**hi), 10.0**lo, 10.0**hi))
        ax2.hist(x, bins=mbins, histtype="step", linewidth=1.6, color=_color(w, cand), label=w)
    ax2.axvline(0.0, color="#a00000", linewidth=1.5, label="margin 1: fails to the left")
    ax2.set_yscale("log")
    ax2.set_xlabel(f"log10 margin (tolerance ÷ error; clipped to [{lo:g}, {hi:g}], exact rows at the right)")
    ax2.set_title(f"{dtype}: margins", fontsize=11)
    ax2.legend(fontsize=8)
    return Figure(f"histogram-{dtype}", f"{dtype}: error and margin distributions",
                  "Left: the error of every row (tensor × case) for each implementation, the candidate's "
                  "per-row tolerances (grey: the rounding the definition allows) and their median (dashed). "
                  "Right: margins; a row left of the red line fails.", _png(fig))


# ---- growth ------------------------------------------------------------------

def growth(report, dtype):
    fig = _new(12, 4.6)
    ax1, ax2 = fig.subplots(1, 2)
    cand = report["candidate"]
    drawn = False
    for ax, grouping, field, label in ((ax1, "depth", "depth", "network depth (layers)"),
                                       (ax2, "width", "width", "layer width (units)")):
        for w in report["whos"]:
            gs = sorted((g for g in report["groups"][grouping] if g["who"] == w and g["dtype"] == dtype),
                        key=lambda g: g["key"][field])
            if not gs:
                continue
            drawn = True
            xs = [g["key"][field] for g in gs]
            for stat, style in (("median_u", "-o"), ("p99_u", "--^")):
                ys = [max(g[stat], FLOOR_CLIP) if math.isfinite(g[stat]) else math.nan for g in gs]
                ax.plot(xs, ys, style, color=_color(w, cand), markersize=4, linewidth=1.3,
                        label=f"{w} {stat.split('_')[0]}")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("error in u")
        ax.grid(True, which="major", alpha=0.3)
        if ax is ax1 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=3, loc="lower left", bbox_to_anchor=(0, 1.08), frameon=False)
    ax1.set_title(f"{dtype}: error against depth (all tensors)", fontsize=11)
    ax2.set_title(f"{dtype}: error against width (rows of layers that wide)", fontsize=11)
    if not drawn:
        return None
    return Figure(f"growth-{dtype}", f"{dtype}: error growth with depth and width",
                  "Median (solid) and p99 (dashed) error in u of every row, grouped by the network's depth "
                  "(left) and by the width of the row's layer (right).", _png(fig))


def figures(report, records):
    """All figures of a report, in page order."""
    rows_by_who = {}
    for rec in records:
        if rec["status"] == "ok":
            for row in rec["rows"] + rec["oracle_rows"]:
                rows_by_who.setdefault((row["who"], row["dtype"]), []).append(row)
    out = []
    for dtype in report["dtypes"]:
        out += [heatmap(report, dtype, "loss_layer"), heatmap(report, dtype, "loss_activation"),
                histograms(report, rows_by_who, dtype), growth(report, dtype)]
    return [f for f in out if f is not None]
