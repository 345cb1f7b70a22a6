"""2-d max-pool and average pool over (pool_height, pool_width) windows with a stride (CS231n's pool_param).

Max-pool: out[n, c, i, j] = max of the window; its VJP sends dout[n, c, i, j] to one maximum of the
window (the first in row-major order here). With tied maxima every convex combination of them is a
valid subgradient (class ``tie``): PyTorch routes to the index its kernel records, JAX's
select_and_scatter to the first it selects; sending the full gradient to every tied maximum is wrong.
No padding (CS231n's max_pool_forward_naive).

Average pool (torch.nn.functional.avg_pool2d, ceil_mode False): zero padding ``pad``; each window's sum
is divided by pool_height * pool_width (count_include_pad True) or by the number of real entries in it
(False). VJP: each window's dout / count is added to every entry of the window (overlaps accumulate).
"""
import numpy as np

from bpcheck.ops.algebra import Plain, floats
from bpcheck.ops.catalog.conv import window_index
from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["MAXPOOL2D", "AVGPOOL2D"]

_PLAIN = Plain()
FAMILIES = COMMON_FAMILIES + ("overlapping", "stride_remainder", "window_full", "non_square")


def _geometry(rng, family):
    ph, pw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if family == "non_square":
        ph, pw = 1, int(rng.integers(2, 4))
    stride = int(rng.integers(1, 3))
    if family == "overlapping":
        ph, pw, stride = max(ph, 2), max(pw, 2), 1
    if family == "stride_remainder":
        ph, pw, stride = 2, 2, 2
    return ph, pw, stride


def _plane(rng, family, ph, pw, stride, pad=0):
    """(H, W) with H + 2 pad = window + stride * k (+ 1 in stride_remainder: a row never read; k >= 1
    when overlapping, so some entry is in two windows); at least the window minus the padding."""
    k = int(rng.integers(1 if family == "overlapping" else 0, 3))
    h = ph - 2 * pad + stride * k
    w = pw - 2 * pad + stride * int(rng.integers(0, 3))
    if family == "stride_remainder":
        h, w = h + 1, w + 1
    if family == "window_full":
        h, w = ph - 2 * pad, pw - 2 * pad
    while h < 1:
        h += stride
    while w < 1:
        w += stride
    return h, w


def _tied_windows(rng, x, ph, pw, stride, dtype, near):
    """Every window gets a second entry equal to its maximum (exact), or exactly one ulp below a maximum
    that stays unique (near). Windows do not overlap here (stride = window), so each is set alone."""
    x = x.astype(dtype).astype(np.float64)
    n, c, h, w = x.shape
    for i in range(0, h - ph + 1, stride):
        for j in range(0, w - pw + 1, stride):
            win = x[:, :, i:i + ph, j:j + pw].reshape(n, c, -1)
            top = np.argmax(win, axis=-1)
            other = (top + 1 + rng.integers(0, ph * pw - 1, size=top.shape)) % (ph * pw)
            peak = np.take_along_axis(win, top[..., None], -1)[..., 0]
            value = np.nextafter(peak.astype(dtype), np.asarray(-np.inf, dtype)).astype(np.float64) if near else peak
            np.put_along_axis(win, other[..., None], value[..., None], -1)
            x[:, :, i:i + ph, j:j + pw] = win.reshape(n, c, ph, pw)
    return x.astype(dtype)


def _max_draw(rng, family, dtype):
    fam = "plain" if family in ("ties_exact", "ties_near") else family
    ph, pw, stride = _geometry(rng, fam)
    if family in ("ties_exact", "ties_near"):
        ph, pw = max(ph, 2), max(pw, 2)
        stride = max(ph, pw)
    h, w = _plane(rng, fam, ph, pw, stride)
    h, w = max(h, ph), max(w, pw)
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 3)), h, w))
    if family in ("ties_exact", "ties_near"):
        return Draw({"x": _tied_windows(rng, x, ph, pw, stride, dtype, family == "ties_near")}, {},
                    {"pool_height": ph, "pool_width": pw, "stride": stride})
    return Draw({"x": x.astype(dtype)}, {}, {"pool_height": ph, "pool_width": pw, "stride": stride})


def _windows(ns, x, h, pad=0):
    xp = ns.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    s = (h["stride"], h["stride"])
    rows, cols = window_index(xp.shape[2], xp.shape[3], h["pool_height"], h["pool_width"], s, (1, 1))
    index = (slice(None), slice(None), rows, cols)
    return xp, index, xp[index]                               # (N, C, OH, OW, KH, KW)


def _argmax(x, h):
    """Flat indices into x of each window's first maximum (row-major), from the exact input values."""
    v = np.asarray(x, dtype=np.float64)
    flat = np.arange(v.size).reshape(v.shape)
    _, index, win = _windows(_PLAIN, v, h)
    ids = flat[index]
    n, c, oh, ow, kh, kw = win.shape
    pick = np.argmax(win.reshape(n, c, oh, ow, kh * kw), axis=-1)
    return np.take_along_axis(ids.reshape(n, c, oh, ow, kh * kw), pick[..., None], -1)[..., 0]


def _max_forward(ns, a, c, h):
    x = a["x"]
    where = _argmax(floats(x), h)
    return x.reshape(-1)[where.reshape(-1)].reshape(where.shape)


def _max_vjp(ns, a, c, h, dout):
    x = a["x"]
    where = _argmax(floats(x), h).reshape(-1)
    flat = ns.scatter_add((int(np.prod(x.shape)),), where, dout.reshape(-1))
    return {"x": flat.reshape(x.shape)}


def _ties(inputs, constants, h):
    """For each output entry (row-major), the flat input positions equal to its window's maximum."""
    v = np.asarray(inputs["x"], dtype=np.float64)
    flat = np.arange(v.size).reshape(v.shape)
    _, index, win = _windows(_PLAIN, v, h)
    n, c, oh, ow, kh, kw = win.shape
    win = win.reshape(n, c, oh, ow, kh * kw)
    ids = flat[index].reshape(n, c, oh, ow, kh * kw)
    top = win.max(axis=-1, keepdims=True)
    return [list(ids[o][win[o] == top[o][0]]) for o in np.ndindex(n, c, oh, ow)]


def _every_max(ns, a, c, h, dout):
    """The full gradient to every tied maximum."""
    v = np.asarray(a["x"], dtype=np.float64)
    out = np.zeros(v.size)
    d = np.asarray(dout, dtype=np.float64).reshape(-1)
    for o, positions in enumerate(_ties({"x": v}, {}, h)):
        out[positions] += d[o]
    return {"x": out.reshape(v.shape)}


def _pool_call(fwd, a, c, h):
    return fwd(a["x"], dict(h))


def _shrink_nc(draw):
    x = draw.inputs["x"]
    for axis in (0, 1):
        for i in range(x.shape[axis] if x.shape[axis] > 1 else 0):
            yield Draw({"x": np.delete(x, i, axis)}, draw.constants, draw.hyper)


MAXPOOL2D = Op(
    name="maxpool2d",
    definition="2-d max-pool, x (N, C, H, W), pool_height x pool_width windows, one stride, no padding",
    inputs=("x",), forward=_max_forward, vjp=_max_vjp, draw=_max_draw,
    families=FAMILIES + ("ties_exact", "ties_near"),
    torch=lambda torch, a, c, h: torch.nn.functional.max_pool2d(
        a["x"], (h["pool_height"], h["pool_width"]), h["stride"]),
    jax=lambda jax, a, c, h: jax.lax.reduce_window(
        a["x"], -jax.numpy.inf, jax.lax.max, (1, 1, h["pool_height"], h["pool_width"]),
        (1, 1, h["stride"], h["stride"]), "VALID"),
    cs231n=("max_pool_forward_naive", "max_pool_backward_naive", _pool_call, lambda r: {"x": r}),
    ties=_ties,
    slips=(Slip("every_tied_max", "gradient sent to every tied maximum (x == max mask) instead of one",
                _every_max),),
    shrink=_shrink_nc)


# --- average pool -------------------------------------------------------------------------------

def _avg_draw(rng, family, dtype):
    ph, pw, stride = _geometry(rng, family)
    pad = int(rng.integers(0, min(ph, pw) // 2 + 1)) if family in ("plain", "padding_border") else 0
    if family == "padding_border":
        ph, pw = max(ph, 2), max(pw, 2)
        pad = 1
    h, w = _plane(rng, family, ph, pw, stride, pad)
    h, w = max(h, ph - 2 * pad, 1), max(w, pw - 2 * pad, 1)
    x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 3)), h, w)).astype(dtype)
    return Draw({"x": x}, {}, {"pool_height": ph, "pool_width": pw, "stride": stride, "pad": pad,
                               "count_include_pad": bool(rng.random() < 0.5)})


def _counts(h, shape):
    ones = np.ones((1, 1) + tuple(shape[2:]))
    _, _, win = _windows(_PLAIN, ones, h, h["pad"])
    if h["count_include_pad"]:
        return np.full(win.shape[2:4], float(h["pool_height"] * h["pool_width"]))
    return win.sum(axis=(-1, -2))[0, 0]


def _avg_forward(ns, a, c, h):
    _, _, win = _windows(ns, a["x"], h, h["pad"])
    total = ns.sum(ns.sum(win, -1), -1)
    return total / ns.const(_counts(h, a["x"].shape))


def _avg_vjp(ns, a, c, h, dout, *, counts=None):
    x, pad = a["x"], h["pad"]
    xp, index, win = _windows(ns, x, h, pad)
    share = dout / ns.const(_counts(h, x.shape) if counts is None else counts)
    kh, kw = h["pool_height"], h["pool_width"]
    spread = share.reshape(share.shape + (1, 1)) * ns.const(np.ones((kh, kw)))
    dxp = ns.scatter_add(xp.shape, index, spread)
    hh, ww = x.shape[2:]
    return {"x": dxp[:, :, pad:pad + hh, pad:pad + ww]}


def _ignores_count_mode(ns, a, c, h, dout):
    flipped = dict(h, count_include_pad=not h["count_include_pad"])
    return {"x": _avg_vjp(ns, a, c, h, dout, counts=_counts(flipped, a["x"].shape))["x"]}



AVGPOOL2D = Op(
    name="avgpool2d",
    definition="2-d average pool, x (N, C, H, W), windows, one stride, zero padding, count_include_pad "
               "(torch.nn.functional.avg_pool2d)",
    inputs=("x",), forward=_avg_forward, vjp=_avg_vjp, draw=_avg_draw, families=FAMILIES + ("padding_border",),
    torch=lambda torch, a, c, h: torch.nn.functional.avg_pool2d(
        a["x"], (h["pool_height"], h["pool_width"]), h["stride"], h["pad"],
        count_include_pad=h["count_include_pad"]),
    jax=lambda jax, a, c, h: jax.lax.reduce_window(
        a["x"], 0.0, jax.lax.add, (1, 1, h["pool_height"], h["pool_width"]), (1, 1, h["stride"], h["stride"]),
        [(0, 0), (0, 0), (h["pad"], h["pad"]), (h["pad"], h["pad"])]) / _counts(h, a["x"].shape),
    cs231n=("avg_pool_forward", "avg_pool_backward", _pool_call, lambda r: {"x": r}),
    slips=(Slip("count_mode_swapped", "count_include_pad ignored: padding counted where it should not be, "
                "or the other way round", _ignores_count_mode),),
    shrink=_shrink_nc)
