"""Softmax cross-entropy on logits, torch.nn.functional.cross_entropy's definition, and CS231n's softmax_loss.

For logits x (N, C) and labels y (N,), with q_n = (1 - eps) onehot(y_n) + eps / C (label smoothing eps):

    logp_n = x_n - max(x_n) - log sum_c exp(x_nc - max(x_n))
    l_n = -sum_c q_nc logp_nc,  and l_n = 0 where y_n = ignore_index
    out = l (reduction "none"), sum_n l_n ("sum"), sum_n l_n / #{n: y_n != ignore_index} ("mean")

VJP: dx_n = w_n (softmax(x_n) - q_n) with w_n = dout_n ("none"), dout ("sum") or dout / #kept ("mean"), and
0 for ignored rows. A "mean" over no kept label is 0/0 (torch gives NaN); it is not drawn.
``softmax_loss`` is CS231n's: reduction "mean", no smoothing, nothing ignored, returning (loss, dx).
Families beyond the common ones: some / all labels ignored, smoothing (always with some rows ignored and
some kept: smoothing must skip the ignored rows), confident logits, batch 1, one class, and
``large_logits`` (rows at +-760, +-110 in float32: the log-sum-exp must subtract each row's own max).
"""
import numpy as np

from bpcheck.ops.algebra import floats
from bpcheck.ops.catalog.softmax import large_logits
from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip
from bpcheck.ops.running import loss_rule

__all__ = ["CROSS_ENTROPY", "SOFTMAX_LOSS"]

FAMILIES = COMMON_FAMILIES + ("some_ignored", "all_ignored", "smoothing", "confident", "batch1", "one_class",
                              "large_logits")
REDUCTIONS = ("mean", "sum", "none")


def _draw_with(rng, family, dtype, *, options=True):
    n = 1 if family == "batch1" else int(rng.integers(2, 6))
    c = 1 if family == "one_class" else int(rng.integers(2, 7))
    x = rng.standard_normal((n, c)) * rng.uniform(0.5, 3.0)
    if family == "large_logits":
        x = large_logits(rng, n, c, dtype)
    y = rng.integers(0, c, size=n)
    if family == "confident":                                # the label's logit 15 or more above every other
        x[np.arange(n), y] = x.max(axis=1) + rng.uniform(15, 40 if dtype == "float32" else 60, size=n)
    hyper = {}
    if options:
        reduction = "none" if family == "all_ignored" and rng.random() < 0.5 else str(rng.choice(REDUCTIONS))
        if family == "all_ignored" and reduction == "mean":
            reduction = "sum"
        ignore = int(rng.choice([-100, -1]))
        if family in ("some_ignored", "smoothing"):          # n >= 2: at least one ignored, at least one kept
            order = rng.permutation(n)
            y[order[: int(rng.integers(1, n))]] = ignore
        if family == "all_ignored":
            y[:] = ignore
        hyper = {"ignore_index": ignore, "reduction": reduction,
                 "label_smoothing": float(rng.choice([0.1, 0.25])) if family == "smoothing" else 0.0}
    return Draw({"x": x.astype(dtype)}, {"y": y.astype(np.int64)}, hyper)


def _parts(ns, a, c, h):
    x, y = a["x"], c["y"]
    n, k = x.shape
    kept = y != h.get("ignore_index", -100)
    rows = np.arange(n)
    peak = x[rows, np.argmax(floats(x), axis=1)].reshape(n, 1)   # an exact selection
    shifted = x - peak
    expd = ns.exp(shifted)
    total = ns.sum(expd, 1, keepdims=True)
    # x - logsumexp(x), the log-sum-exp formed first (scipy.special.logsumexp, torch.logsumexp), is as
    # correct: its rounding is u |x| absolute, what large logits make visible
    logp = ns.either(shifted - ns.log(total), x - (peak + ns.log(total)))
    eps = h.get("label_smoothing", 0.0)
    onehot = np.zeros((n, k))
    onehot[rows[kept], y[kept]] = 1.0
    q = (ns.const(onehot) * (ns.const(1.0) - ns.const(eps)) + ns.const(eps) / ns.const(float(k))) if eps \
        else ns.const(onehot)                                 # eps is the given float; q's roundings are modelled
    return logp, ns.either(expd / total, ns.exp(x - (peak + ns.log(total)))), q, kept


def _weights(ns, h, kept, dout):
    reduction = h.get("reduction", "mean")
    mask = kept.reshape(-1, 1)
    if reduction == "none":
        return ns.where(mask, dout.reshape(-1, 1), ns.const(0.0))
    w = dout.reshape(1, 1)
    if reduction == "mean":
        w = w / ns.const(float(np.count_nonzero(kept)))
    return ns.where(mask, w, ns.const(0.0))


def _forward(ns, a, c, h):
    logp, _, q, kept = _parts(ns, a, c, h)
    per_row = ns.where(kept, -ns.sum(q * logp, 1), ns.const(0.0))
    reduction = h.get("reduction", "mean")
    if reduction == "none":
        return per_row
    total = ns.sum(per_row, 0)
    return total / ns.const(float(np.count_nonzero(kept))) if reduction == "mean" else total


def _vjp(ns, a, c, h, dout):
    _, p, q, kept = _parts(ns, a, c, h)
    return {"x": _weights(ns, h, kept, dout) * (p - q)}


def _first_row_weight(ns, a, c, h, dout):
    """reduction "none" with every row scaled by dout[0]."""
    _, p, q, kept = _parts(ns, a, c, h)
    if h.get("reduction") != "none":
        return {}
    w = ns.where(kept.reshape(-1, 1), dout[0:1].reshape(1, 1), ns.const(0.0))
    return {"x": w * (p - q)}


def _counting_ignored(ns, a, c, h, dout):
    """reduction "mean" dividing by N, ignored rows included."""
    _, p, q, kept = _parts(ns, a, c, h)
    if h.get("reduction") != "mean":
        return {}
    w = ns.where(kept.reshape(-1, 1), dout.reshape(1, 1) / ns.const(float(len(kept))), ns.const(0.0))
    return {"x": w * (p - q)}


def _shrink(draw):
    x, y = draw.inputs["x"], draw.constants["y"]
    keep_ok = draw.hyper.get("reduction") != "mean"
    for i in range(x.shape[0] if x.shape[0] > 1 else 0):
        rest = np.delete(y, i)
        if keep_ok or np.any(rest != draw.hyper.get("ignore_index", -100)):
            yield Draw({"x": np.delete(x, i, 0)}, {"y": rest}, draw.hyper)


def _torch(torch, a, c, h):
    return torch.nn.functional.cross_entropy(a["x"], c["y"], ignore_index=h["ignore_index"],
                                             reduction=h["reduction"], label_smoothing=h["label_smoothing"])


def _jax(jax, a, c, h):
    jnp = jax.numpy
    x, y = a["x"], c["y"]
    k = x.shape[1]
    kept = y != h["ignore_index"]
    logp = jax.nn.log_softmax(x, axis=1)
    eps = h["label_smoothing"]
    q = (1 - eps) * jax.nn.one_hot(jnp.where(kept, y, 0), k, dtype=x.dtype) + eps / k
    per_row = jnp.where(kept, -jnp.sum(q * logp, axis=1), 0.0)
    if h["reduction"] == "none":
        return per_row
    total = jnp.sum(per_row)
    return total / jnp.sum(kept) if h["reduction"] == "mean" else total


CROSS_ENTROPY = Op(
    name="cross_entropy",
    definition="softmax cross-entropy on logits x (N, C) with labels y (N,), ignore_index, label smoothing "
               "and reduction mean / sum / none (torch.nn.functional.cross_entropy)",
    inputs=("x",), constants=("y",), forward=_forward, vjp=_vjp, draw=_draw_with, families=FAMILIES,
    torch=_torch, jax=_jax,
    cs231n=("cross_entropy_forward", "cross_entropy_backward",
            lambda fwd, a, c, h: fwd(a["x"], c["y"], dict(h)), lambda r: {"x": r}),
    slips=(Slip("first_row_weight", "upstream gradient of row 0 used for every row (reduction 'none')",
                _first_row_weight),
           Slip("ignored_counted", "ignored labels still counted in the mean's denominator",
                _counting_ignored)),
    shrink=_shrink)

SOFTMAX_LOSS = Op(
    name="softmax_loss",
    definition="CS231n's softmax_loss(x, y) -> (loss, dx): mean softmax cross-entropy over N",
    inputs=("x",), constants=("y",), forward=_forward, vjp=_vjp,
    draw=lambda rng, family, dtype: _draw_with(rng, family, dtype, options=False),
    families=COMMON_FAMILIES + ("confident", "batch1", "one_class", "large_logits"),
    torch=lambda torch, a, c, h: torch.nn.functional.cross_entropy(a["x"], c["y"]),
    jax=lambda jax, a, c, h: -jax.numpy.mean(jax.numpy.take_along_axis(
        jax.nn.log_softmax(a["x"], axis=1), c["y"][:, None], axis=1)),
    cs231n=("softmax_loss", None, lambda fwd, a, c, h: fwd(a["x"], c["y"]), lambda r: {"x": r[0]}),
    shrink=_shrink, running=loss_rule("softmax_cross_entropy"))
