"""The training page: the teacher-forced verdict and the free-running picture (``bpcheck train --html``).

One figure: the loss per step of the unperturbed truth, the envelope of the ensemble (every gradient moved
by the error the tolerance grants; ``bpcheck.train.envelope``) and the candidate's free run; beside it the
candidate's loss gap in units of the envelope's spread. The verdict comes from the teacher-forced run
alone; the picture answers "bug or rounding?" for the curve.
"""
import html

import numpy as np

from bpcheck.report.plots import CANDIDATE_COLOR, Figure, _new, _png

__all__ = ["loss_figure", "training_page"]


def loss_figure(curve, dtype):
    """A ``Figure``: losses with the envelope (left) and the gap in envelope units (right, log scale)."""
    fig = _new(9, 3.2)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    steps = np.asarray(curve["steps"])
    members = np.asarray(curve["members"])
    left.fill_between(steps, members.min(0), members.max(0), color="#bbbbbb", label="envelope (rounding-size errors)")
    left.plot(steps, curve["truth"], color="black", lw=1, label="truth")
    left.plot(steps, curve["candidate"], color=CANDIDATE_COLOR, lw=1, ls="--", label="candidate")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.legend(fontsize=7)
    units = np.maximum(np.asarray(curve["loss_units"], dtype=np.float64), 1e-6)
    right.semilogy(steps, units, color=CANDIDATE_COLOR)
    right.axhline(1.0, color="black", lw=0.8, ls=":")
    right.set_xlabel("step")
    right.set_ylabel("|loss gap| / envelope spread")
    if curve["horizon"]:
        for ax in (left, right):
            ax.axvline(curve["horizon"], color="#d62728", lw=0.8)
    return Figure(f"loss-{dtype}", f"Free-running loss, {dtype}",
                  "Grey: the spread of truth trajectories whose gradients carry errors of the tolerance's size; "
                  "dashed: the candidate. Right: the candidate's gap in units of that spread (1 = inside it). "
                  + (f"Red: the horizon, step {curve['horizon']}, past which correct runs part by more than 1%."
                     if curve["horizon"] else "Correct runs stay within 1% of each other over these steps."),
                  _png(fig))


def training_page(report, curves):
    """A standalone HTML page: the verdict and diagnosis (``report.summary()``) and one figure per dtype
    (``curves``: {dtype: envelope result})."""
    figures = "".join(loss_figure(curve, dtype).html() for dtype, curve in curves.items())
    return ("<!doctype html><html><head><meta charset='utf-8'><title>bpcheck train</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:auto}pre{white-space:pre-wrap}</style>"
            f"</head><body><h1>bpcheck train: {html.escape(report.verdict.upper())}</h1>"
            f"<pre>{html.escape(report.summary())}</pre>{figures}</body></html>")
