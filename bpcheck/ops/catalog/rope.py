"""Rotary position embedding (RoPE, Su et al. 2021, RoFormer eq. 34), in both layouts people write.

x (B, H, T, D) with D even; constants cos, sin (T, D / 2) in x's dtype: cos(p_t theta_i) and
sin(p_t theta_i) for position p_t and frequency theta_i = base^(-2i / D), as an implementation's
precomputed cache holds them (the record takes the tables as given, so it is exact for any way of
computing them). Each pair (a_i, b_i) of x is rotated by its angle:

    out_a = a cos - b sin,    out_b = a sin + b cos.

``layout`` says which entries pair up: "interleaved" pairs (x[2i], x[2i + 1]) (RoFormer, GPT-J, Meta's
LLaMA reference code); "half" pairs (x[i], x[i + D/2]) (GPT-NeoX, Hugging Face's ``rotate_half``).
The VJP rotates back, by the transposed rotation: da = dout_a cos + dout_b sin, db = -dout_a sin +
dout_b cos. Neither torch nor JAX has a RoPE built-in; the bindings write the rotation with each
framework's own elementwise ops.
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["ROPE"]

FAMILIES = COMMON_FAMILIES + ("interleaved", "half_split", "large_positions")


def _draw(rng, family, dtype):
    b, h, t = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(2, 5))
    d = 2 * int(rng.integers(2, 4))
    layout = {"interleaved": "interleaved", "half_split": "half"}.get(family, str(rng.choice(["interleaved", "half"])))
    start = int(rng.integers(1000, 5000)) if family == "large_positions" else int(rng.integers(0, 4))
    positions = np.arange(start, start + t, dtype=np.float64)
    theta = 10000.0 ** (-2 * np.arange(d // 2) / d)
    angles = positions[:, None] * theta[None, :]
    return Draw({"x": (rng.standard_normal((b, h, t, d)) * rng.uniform(0.5, 2.0)).astype(dtype)},
                {"cos": np.cos(angles).astype(dtype), "sin": np.sin(angles).astype(dtype)},
                {"layout": layout, "start": start})


def _pairs(x, layout):
    """(a, b): the first and second entry of each pair, (B, H, T, D / 2) each."""
    d = x.shape[-1]
    if layout == "interleaved":
        return x[..., 0::2], x[..., 1::2]
    return x[..., : d // 2], x[..., d // 2:]


def _join(ns, a, b, layout):
    """The inverse of ``_pairs``."""
    if layout == "half":
        return ns.concat([a, b], -1)
    both = ns.concat([a.reshape(*a.shape, 1), b.reshape(*b.shape, 1)], -1)
    return both.reshape(*a.shape[:-1], 2 * a.shape[-1])


def _rotate(ns, x, c, layout, sign=1):
    """Each pair rotated by its angle (``sign`` -1: by minus its angle, the transposed rotation)."""
    cos, sin = ns.const(c["cos"]), ns.const(c["sin"])
    a, b = _pairs(x, layout)
    if sign > 0:
        return _join(ns, a * cos - b * sin, a * sin + b * cos, layout)
    return _join(ns, a * cos + b * sin, b * cos - a * sin, layout)


def _forward(ns, a, c, h):
    return _rotate(ns, a["x"], c, h["layout"])


def _vjp(ns, a, c, h, dout):
    return {"x": _rotate(ns, dout, c, h["layout"], sign=-1)}


def _shrink(draw):
    x = draw.inputs["x"]
    for axis in (0, 1):
        if x.shape[axis] > 1:
            yield Draw({"x": np.delete(x, 0, axis)}, draw.constants, draw.hyper)
    if x.shape[2] > 1:
        yield Draw({"x": x[:, :, 1:]}, {k: v[1:] for k, v in draw.constants.items()},
                   {**draw.hyper, "start": draw.hyper["start"] + 1})


def _framework(concat, stack):
    """The binding for a framework whose concatenate and stack along the last axis are given."""
    def rope(module, a, c, h):
        x, cos, sin = a["x"], c["cos"], c["sin"]
        d = x.shape[-1]
        first, second = (x[..., 0::2], x[..., 1::2]) if h["layout"] == "interleaved" else (x[..., : d // 2],
                                                                                            x[..., d // 2:])
        out_a, out_b = first * cos - second * sin, first * sin + second * cos
        if h["layout"] == "half":
            return concat(module, [out_a, out_b])
        return stack(module, [out_a, out_b]).reshape(*x.shape)
    return rope


ROPE = Op(
    name="rope",
    definition="rotary position embedding of x (B, H, T, D) with given cos, sin (T, D/2) tables; pairs "
               "(x[2i], x[2i+1]) (layout interleaved) or (x[i], x[i+D/2]) (layout half)",
    inputs=("x",), constants=("cos", "sin"), forward=_forward, vjp=_vjp, draw=_draw, families=FAMILIES,
    torch=_framework(lambda m, parts: m.cat(parts, -1), lambda m, parts: m.stack(parts, -1)),
    jax=_framework(lambda m, parts: m.numpy.concatenate(parts, -1), lambda m, parts: m.numpy.stack(parts, -1)),
    shrink=_shrink,
    slips=(Slip("rotated_forward_again", "the backward rotates by +angle again instead of -angle (the forward's "
                                         "rotation where its transpose belongs)",
                lambda ns, a, c, h, dout: {"x": _rotate(ns, dout, c, h["layout"])}),
           Slip("other_layout", "the backward pairs the entries in the other layout (interleaved vs half)",
                lambda ns, a, c, h, dout: {"x": _rotate(ns, dout, c, "half" if h["layout"] == "interleaved"
                                                       else "interleaved", sign=-1)})))
