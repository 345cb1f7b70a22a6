"""Scaled dot-product attention, torch layout, with grouped-query heads, masks, a bias and a given dropout mask.

Shapes (dtype float32 or float64 throughout; the bool constants are bool):

    q (B, H, Tq, D), k (B, G, Tk, D), v (B, G, Tk, Dv), H a multiple of G, r = H / G;
    query head h reads key/value group h // r (torch's ``enable_gqa``: k and v repeat_interleave'd
    r times along the heads; G == H is ordinary multi-head attention, G == 1 multi-query);
    mask (Tq, Tk) or (B, H, Tq, Tk), bool, True = attend; bias (Tq, Tk) or (B, H, Tq, Tk), additive,
    in the inputs' dtype; keep (B, H, Tq, Tk), bool, the dropout keep-mask;
    hyper: scale (a float, drawn as 1 / sqrt(D) or another value), causal (bool), dropout_p (the drop
    probability, torch's convention; 0: no dropout);  out (B, H, Tq, Dv).

The definition (Vaswani et al. 2017, eq. 1; torch.nn.functional.scaled_dot_product_attention's
documented reference implementation, which this follows term by term):

    S = scale q k^T + bias,       allowed = mask and (not causal or j <= i)      (torch's is_causal:
    P = softmax over the allowed j of each row (0 where not allowed),              top-left aligned)
    A = P o keep / (1 - dropout_p),    out = A v.

A fully masked row (no allowed j) has P = 0, so out = 0 and every gradient through it is 0. That is
torch's choice: its math kernel normalises with ``at::_safe_softmax(attn, -1)``, which returns 0 for a
row that is -inf throughout (aten/src/ATen/native/transformers/attention.cpp,
``_scaled_dot_product_attention_math``; on the installed torch sdpa gives out 0 and dq 0 there). The
literal formula is 0 / 0: the docstring's reference sketch (``torch.softmax`` of an all -inf row) gives
NaN, which no definition can take as a truth. JAX's ``jax.nn.dot_product_attention``
puts a large finite negative number (-0.7 float32 max) at masked logits instead of -inf, so a fully
masked row is a *uniform* average of all Tk values (P = 1 / Tk, dq = dk = 0 there, dv gets dout / Tk):
the convention ``uniform_masked_row`` (jax/_src/nn/functions.py, ``_apply_masks`` and
``_get_large_negative``). Causal alignment when Tq != Tk: torch's is_causal is top-left
(``torch.ones(L, S).tril(diagonal=0)``: query i sees keys j <= i; torch's docstring: "the form of the
upper left causal bias ... when the mask is a non-square matrix"), and so is JAX's ``is_causal`` (``_get_causal_mask``: ``jnp.tril(jnp.ones((T, S)))``), so
there is no convention between them (torch's ``torch.nn.attention.bias.causal_lower_right`` and
FlashAttention from 2.1 align bottom-right instead; neither binding uses those).

VJP, in closed form (the FlashAttention-2 backward, Dao 2023, Algorithm 2):

    dA = dout v^T,   dP = dA o keep / (1 - dropout_p),   delta = rowsum(dP o P)  [= rowsum(dout o out)]
    dS = P o (dP - delta),   dq = scale dS k,   dk = scale dS^T q,   dv = A^T dout,

where each group's dk and dv sum their r query heads' parts. Admissible forms (``ns.either``): torch's
math kernel scales q and k by sqrt(scale) each before the product (and its gradients by sqrt(scale)
again), folds the dropout scale into v, and delta may be either row sum. Each row is shifted by its
largest allowed logit before exp, as every implementation does; softmax does not depend on the shift,
so the record takes that logit's value rounded to float32 as an exact constant and the rounding model
charges the logits' own errors once, not a second time through the shift.

The tolerance grows with the logits' size: an absolute error in a logit is a relative error in its
probability. The plain family draws q and k of standard deviation 0.5 to 1 (logits of order 1); logits
past exp's range are the ``peaked_logits`` family's.

Bindings: torch ``F.scaled_dot_product_attention`` (``enable_gqa=True`` when H > G; bool mask and bias
passed as one float ``attn_mask`` (bias, -inf where not allowed) as torch's own
``convert_boolean_attn_mask`` does; torch refuses ``is_causal`` with an ``attn_mask``, so causality is
folded into the mask when there is one). sdpa takes no given dropout mask, so a case with dropout calls
torch's math kernel ``torch.ops.aten._scaled_dot_product_attention_math`` (the kernel sdpa itself
selects for these CPU cases, ``torch._fused_sdp_choice`` = MATH), whose ``dropout_mask`` argument
exists for exactly this ("In order to validate the correctness of the fused kernels, we need to use the
same dropout mask"; it applies the 1 / (1 - p) scale to v).
JAX ``jax.nn.dot_product_attention`` (layout (B, T, N, H): transposed; implementation None = "xla"),
with two documented limits: it has no dropout, and it computes the softmax in float32 whatever the
input dtype ("Softmax and it is always carried out in fp32", ``_dot_product_attention_core``), so a
float64 case has float32 accuracy. It requires ``value`` to have ``key``'s shape; where Dv != D the
binding pads q and k, or v, with zero columns (exact: a zero term changes no sum) and slices the output.
"""
import numpy as np

from bpcheck.ops.algebra import floats
from bpcheck.ops.record import COMMON_FAMILIES, Convention, Draw, Op, Slip

__all__ = ["ATTENTION"]

FAMILIES = COMMON_FAMILIES + ("peaked_logits", "fully_masked_row", "causal_rectangular", "grouped_heads",
                              "odd_head_dim", "batch2", "dropout_mask", "additive_bias", "asymmetric_shapes")
# Logits spanning past exp's underflow after the max is subtracted, their max past exp's overflow before.
SPAN = {"float32": 110.0, "float64": 760.0}
DROPOUT_P = (0.1, 0.2, 0.25, 0.5)


# --- drawing ------------------------------------------------------------------------------------

def _dims(rng, family):
    """(B, G, r, Tq, Tk, D, Dv) of ``family``."""
    b = 2 if family == "batch2" else int(rng.integers(1, 3))
    g = int(rng.integers(1, 3))
    r = int(rng.integers(1, 3))
    if family == "grouped_heads":
        r = 2 if g == 2 else int(rng.integers(2, 5))
    tq, tk = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    d, dv = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    if family == "causal_rectangular":
        tq, tk = (int(t) for t in rng.choice([2, 3, 4, 5], size=2, replace=False))
    if family == "peaked_logits":
        tk = max(tk, 3)
    if family == "odd_head_dim":
        d = int(rng.choice([3, 5]))
    if family == "asymmetric_shapes":
        tq, tk, d, dv = (int(t) for t in rng.permutation([2, 3, 4, 5]))
    return b, g, r, tq, tk, d, dv


def _draw(rng, family, dtype):
    b, g, r, tq, tk, d, dv = _dims(rng, family)
    h = g * r
    q = rng.standard_normal((b, h, tq, d)) * rng.uniform(0.5, 1.0)      # logits of order 1 (large ones:
    k = rng.standard_normal((b, g, tk, d)) * rng.uniform(0.5, 1.0)      # peaked_logits)
    v = rng.standard_normal((b, g, tk, dv)) * rng.uniform(0.5, 2.0)
    scale = 1.0 / np.sqrt(d) if rng.random() < 0.75 else float(rng.choice([0.3, 0.5, 1.0, 2.0]))
    if family == "peaked_logits":
        scale = 1.0 / np.sqrt(d)
        span = SPAN[dtype] * rng.uniform(1.05, 1.2) / scale
        q[..., 0] = span * rng.uniform(1.0, 1.05, size=q.shape[:-1])        # every row: logits from ~0
        k[..., 0] = rng.uniform(0.0, 1.0, size=k.shape[:-1])                 # to past exp's overflow
        k[..., 0, 0], k[..., -1, 0] = 0.0, 1.0                               # two keys near the top:
        k[..., -2, 0] = 1.0 - rng.uniform(0.0, 0.01, size=k.shape[:-2])      # P is not one-hot
        q[..., 1:] *= 0.25
        k[..., 1:] *= 0.25
    causal = family == "causal_rectangular" or (family == "plain" and rng.random() < 0.25)
    four_d = rng.random() < 0.5                        # mask and bias: (Tq, Tk) broadcast, or per head
    mask_shape = (b, h, tq, tk) if four_d else (tq, tk)
    bias_shape = (b, h, tq, tk) if rng.random() < 0.5 else (tq, tk)
    mask = np.ones(mask_shape, dtype=bool)
    bias = np.zeros(bias_shape)
    keep = np.ones((b, h, tq, tk), dtype=bool)
    p = 0.0
    if family == "fully_masked_row":                  # one query row sees no key; another sees some
        mask = rng.random(mask_shape) < 0.7
        mask[..., np.arange(tq), rng.integers(0, tk, size=tq)] = True
        row = int(rng.integers(0, tq))
        if four_d:
            mask[int(rng.integers(0, b)), int(rng.integers(0, h)), row, :] = False
        else:
            mask[row, :] = False
    if family == "additive_bias":
        bias = rng.standard_normal(bias_shape) * rng.uniform(0.5, 3.0)
        if rng.random() < 0.5:                        # with a padding-like mask, every row keeping a key
            mask = rng.random(mask_shape) < 0.6
            mask[..., np.arange(tq), rng.integers(0, tk, size=tq)] = True
    if family == "dropout_mask":
        p = float(rng.choice(DROPOUT_P))
        keep = rng.random(keep.shape) >= p
        dropped, kept = rng.permutation(keep.size)[:2]                 # some entry dropped, some kept
        keep.flat[dropped], keep.flat[kept] = False, True
    return Draw({"q": q.astype(dtype), "k": k.astype(dtype), "v": v.astype(dtype)},
                {"mask": mask, "bias": bias.astype(dtype), "keep": keep},
                {"scale": float(scale), "causal": bool(causal), "dropout_p": p})


# --- the definition ------------------------------------------------------------------------------

def allowed(shape, c, h):
    """(B, H, Tq, Tk) bool: mask and, if causal, top-left causality (query i sees keys j <= i)."""
    b, hh, tq, tk = shape
    ok = np.broadcast_to(np.asarray(c["mask"], dtype=bool), shape)
    if h["causal"]:
        ok = ok & np.tril(np.ones((tq, tk), dtype=bool))
    return np.asarray(ok)


def _grouped(x, r):
    """k or v (B, G, T, E) repeated to (B, G r, T, E): head h reads group h // r."""
    return x[:, np.arange(x.shape[1] * r) // r]


def _group_sum(ns, x, g):
    """(B, G r, T, E) summed over each group's r heads: (B, G, T, E)."""
    b, hh, t, e = x.shape
    return ns.sum(x.reshape(b, g, hh // g, t, e), 2)


def _t(x):
    return x.transpose(0, 1, 3, 2)


def _parts(ns, a, c, h, uniform_empty=False):
    """The forward's intermediates: k, v repeated to the query heads, P, A (= P with dropout), out."""
    q = a["q"]
    r = q.shape[1] // a["k"].shape[1]
    ke, ve = _grouped(a["k"], r), _grouped(a["v"], r)
    scale = ns.const(h["scale"])
    root = ns.sqrt(scale)
    s = ns.either(ns.matmul(q, _t(ke)) * scale, ns.matmul(q * root, _t(ke * root)))
    bias = np.asarray(c["bias"])
    if np.any(bias != 0):
        s = s + ns.const(bias)
    ok = allowed(s.shape, c, h)
    # The shift: each row's largest allowed logit, its value rounded to float32, an exact constant in
    # every reading. Softmax does not depend on the shift, so an implementation's error in its own max
    # (any number near it does) costs nothing: the model charges the logits' own errors once.
    values = floats(s)
    j = np.argmax(np.where(ok, values, -np.inf), axis=-1)
    shift = ns.const(values[(*np.indices(j.shape), j)].astype(np.float32).astype(np.float64)[..., None])
    e = ns.where(ok, ns.exp(ns.where(ok, s - shift, ns.const(0.0))), ns.const(0.0))
    rows = ok.any(axis=-1, keepdims=True)
    p = e / ns.where(rows, ns.sum(e, -1, keepdims=True), ns.const(1.0))
    if uniform_empty:                                  # JAX: a fully masked row averages every value
        p = ns.where(rows, p, ns.const(1.0) / ns.const(float(ok.shape[-1])))
    if h["dropout_p"] > 0:
        drop = ns.const(1.0) / (ns.const(1.0) - ns.const(h["dropout_p"]))
        kept = ns.where(c["keep"], p, ns.const(0.0))
        att = kept * drop
        out = ns.either(ns.matmul(att, ve), ns.matmul(kept, ve * drop))
    else:
        drop, att = None, p
        out = ns.matmul(att, ve)
    return {"q": q, "ke": ke, "ve": ve, "scale": scale, "root": root, "p": p, "att": att, "drop": drop,
            "out": out, "rows": rows, "r": r}


def _forward(ns, a, c, h):
    return _parts(ns, a, c, h)["out"]


def _vjp(ns, a, c, h, dout, *, uniform_empty=False, rowsum=True, scale_dq=1, dk_from_p=False,
         group_last=False, dv_untransposed=False):
    """The closed-form VJP; the keyword flags make the slips (and the JAX convention)."""
    f = _parts(ns, a, c, h, uniform_empty)
    g = a["k"].shape[1]
    p, ke, ve, q, scale, root = f["p"], f["ke"], f["ve"], f["q"], f["scale"], f["root"]
    da = ns.matmul(dout, _t(ve))
    if f["drop"] is not None:
        dp = ns.either(ns.where(c["keep"], da * f["drop"], ns.const(0.0)),
                       ns.where(c["keep"], ns.matmul(dout, _t(ve * f["drop"])), ns.const(0.0)))
    else:
        dp = da
    delta = ns.either(ns.sum(dp * p, -1, keepdims=True), ns.sum(dout * f["out"], -1, keepdims=True))
    ds = p * (dp - delta) if rowsum else p * dp
    if uniform_empty:
        ds = ns.where(f["rows"], ds, ns.const(0.0))
    dq = ns.either(ns.matmul(ds, ke) * scale, ns.matmul(ds, ke * root) * root)
    for _ in range(scale_dq - 1):
        dq = dq * scale
    dke = ns.either(ns.matmul(_t(p if dk_from_p else ds), q) * scale,
                    ns.matmul(_t(p if dk_from_p else ds), q * root) * root)
    dve = ns.matmul(f["att"], dout) if dv_untransposed else ns.matmul(_t(f["att"]), dout)
    if group_last:
        last = np.arange(g) * f["r"] + f["r"] - 1
        dk, dv = dke[:, last], dve[:, last]
    else:
        dk, dv = _group_sum(ns, dke, g), _group_sum(ns, dve, g)
    return {"q": dq, "k": dk, "v": dv}


# --- slips ---------------------------------------------------------------------------------------

def _only(names, **flags):
    def vjp(ns, a, c, h, dout):
        grads = _vjp(ns, a, c, h, dout, **flags)
        return {k: grads[k] for k in names}
    return vjp


def _dv_untransposed(ns, a, c, h, dout):
    """dv = A dout (no transpose): a shape error unless Tq == Tk, where it gives wrong values."""
    if a["q"].shape[2] != a["k"].shape[2]:
        return {}
    return _only(("v",), dv_untransposed=True)(ns, a, c, h, dout)


SLIPS = (
    Slip("softmax_no_rowsum", "attention backward without the softmax's rowsum term: dS = P * dP "
                              "instead of P * (dP - rowsum(dP * P))", _only(("q", "k"), rowsum=False)),
    Slip("scale_twice_dq", "the scale applied twice in dq: scale^2 dS k", _only(("q",), scale_dq=2)),
    Slip("dk_from_p", "dk computed from the probabilities P instead of dS: scale P^T q", _only(("k",), dk_from_p=True)),
    Slip("group_last_head", "grouped heads: each group's dk and dv taken from its last query head only "
                            "(assigned with = instead of accumulated with +=)",
         _only(("k", "v"), group_last=True)),
    Slip("dv_untransposed", "dv = P dout instead of P^T dout (P not transposed)", _dv_untransposed),
)


# --- the JAX convention ---------------------------------------------------------------------------

UNIFORM_MASKED_ROW = Convention(
    "uniform_masked_row",
    "JAX's jax.nn.dot_product_attention gives a fully masked query row the uniform average of all Tk "
    "values (P = 1/Tk; dq = dk = 0 there, dv gets dout/Tk): it puts -0.7 x float32 max, not -inf, at "
    "masked logits (jax/_src/nn/functions.py, _apply_masks and _get_large_negative)",
    lambda ns, a, c, h: _parts(ns, a, c, h, uniform_empty=True)["out"],
    lambda ns, a, c, h, dout: _vjp(ns, a, c, h, dout, uniform_empty=True))


# --- bindings ------------------------------------------------------------------------------------

def _torch(torch, a, c, h):
    q, k, v = a["q"], a["k"], a["v"]
    tq, tk = q.shape[2], k.shape[2]
    mask, bias, causal, p = c["mask"], c["bias"], h["causal"], h["dropout_p"]
    attn_mask = None
    if not bool(mask.all()) or bool((bias != 0).any()):
        ok = mask & torch.ones(tq, tk, dtype=torch.bool).tril() if causal else mask
        causal = False                                 # torch refuses is_causal with an attn_mask
        attn_mask = torch.where(ok, bias, torch.tensor(float("-inf"), dtype=q.dtype))
    if p > 0:                                          # sdpa's math kernel with the given keep-mask
        return torch.ops.aten._scaled_dot_product_attention_math(
            q, k, v, attn_mask, p, causal, c["keep"], scale=h["scale"], enable_gqa=q.shape[1] != k.shape[1])[0]
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, is_causal=causal, scale=h["scale"], enable_gqa=q.shape[1] != k.shape[1])


def _jax(jax, a, c, h):
    jnp = jax.numpy
    q, k, v = (jnp.swapaxes(a[n], 1, 2) for n in ("q", "k", "v"))          # (B, T, N, E)
    d, dv = q.shape[-1], v.shape[-1]
    if dv < d:                                         # value must have key's shape: zero columns
        v = jnp.pad(v, ((0, 0), (0, 0), (0, 0), (0, d - dv)))
    elif d < dv:
        q, k = (jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, dv - d))) for x in (q, k))

    def four(x):
        return x if x.ndim == 4 else x[None, None]
    mask = None if np.all(np.asarray(c["mask"])) else four(c["mask"])            # constants: concrete
    bias = None if not np.any(np.asarray(c["bias"]) != 0) else four(c["bias"])
    out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=h["scale"], is_causal=h["causal"],
                                       implementation=None)
    return jnp.swapaxes(out, 1, 2)[..., :dv]


def _jax_limit(a, c, h):
    if str(a["q"].dtype) == "float64":
        return ("jax.nn.dot_product_attention computes its softmax in float32 whatever the input dtype "
                "(jax/_src/nn/functions.py, _dot_product_attention_core: 'Softmax and it is always carried "
                "out in fp32'): a float64 call has float32 accuracy")
    if h["dropout_p"] > 0:
        return "jax.nn.dot_product_attention has no dropout (no dropout argument, no given mask)"
    return None


# --- shrinking -----------------------------------------------------------------------------------

def _take(x, axis, keep):
    """``x`` without the dropped entries along ``axis`` counted from the end (mask and bias may be 2-d)."""
    return x if x.ndim < -axis else np.take(x, keep, axis=axis)


def _shrink(draw):
    """Drop one batch entry, kv group (with its query heads), query, key, head-dim or value column."""
    q, k, v = (draw.inputs[n] for n in ("q", "k", "v"))
    b, hh, tq, d = q.shape
    g, tk, dv = k.shape[1], k.shape[2], v.shape[3]
    r = hh // g
    c = draw.constants

    def made(inputs, consts):
        return Draw(inputs, {**c, **consts}, draw.hyper)
    for i in range(b if b > 1 else 0):
        keep = [j for j in range(b) if j != i]
        yield made({n: x[keep] for n, x in draw.inputs.items()}, {n: _take(x, -4, keep) for n, x in c.items()})
    for i in range(g if g > 1 else 0):
        groups = [j for j in range(g) if j != i]
        heads = [j for j in range(hh) if j // r != i]
        yield made({"q": q[:, heads], "k": k[:, groups], "v": v[:, groups]},
                   {n: _take(x, -3, heads) for n, x in c.items()})
    for i in range(tq if tq > 1 else 0):
        rows = [j for j in range(tq) if j != i]
        yield made({"q": q[:, :, rows], "k": k, "v": v}, {n: _take(x, -2, rows) for n, x in c.items()})
    for i in range(tk if tk > 1 else 0):
        cols = [j for j in range(tk) if j != i]
        yield made({"q": q, "k": k[:, :, cols], "v": v[:, :, cols]}, {n: _take(x, -1, cols) for n, x in c.items()})
    for i in range(d if d > 1 else 0):
        cols = [j for j in range(d) if j != i]
        yield made({"q": q[..., cols], "k": k[..., cols], "v": v}, {})
    for i in range(dv if dv > 1 else 0):
        yield made({"q": q, "k": k, "v": v[..., [j for j in range(dv) if j != i]]}, {})


ATTENTION = Op(
    name="attention",
    definition="scaled dot-product attention, torch layout: q (B, H, Tq, D), k (B, G, Tk, D), v (B, G, Tk, Dv), "
               "head h reading group h // (H/G); out = (softmax(scale q k^T + bias, masked, causal top-left) "
               "o keep / (1 - dropout_p)) v, a fully masked row giving 0 (torch's _safe_softmax)",
    inputs=("q", "k", "v"), constants=("mask", "bias", "keep"), forward=_forward, vjp=_vjp, draw=_draw,
    families=FAMILIES, torch=_torch, jax=_jax, slips=SLIPS, shrink=_shrink,
    conventions=(UNIFORM_MASKED_ROW,), limits=(("jax", _jax_limit),))
