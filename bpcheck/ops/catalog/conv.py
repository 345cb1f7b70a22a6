"""2-d convolution (cross-correlation, as every framework computes it) with stride, zero padding and dilation.

For x (N, C, H, W), w (F, C, KH, KW), b (F,), stride (sh, sw), padding (ph, pw), dilation (dh, dw):

    OH = (H + 2 ph - dh (KH - 1) - 1) // sh + 1     (and OW alike; the remainder rows are never read)
    out[n, f, i, j] = b[f] + sum_{c, k, l} w[f, c, k, l] xpad[n, c, i sh + k dh, j sw + l dw]

written as im2col: patches (N OH OW, C KH KW) times w (F, C KH KW)^T. VJP: db = sum dout, dw = dout^T
patches, dxpad = col2im(dout w) (overlapping windows accumulate), dx = dxpad without its padding.
torch.nn.functional.conv2d; jax.lax.conv_general_dilated (NCHW, OIHW, rhs_dilation).
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["CONV2D", "window_index"]

FAMILIES = COMMON_FAMILIES + ("stride_remainder", "kernel_full", "padding_border", "dilation", "non_square")


def window_index(h, w, kh, kw, stride, dilation):
    """Row and column indices of every window into an (h, w) plane: arrays broadcasting to
    (OH, OW, KH, KW) when used as plane[..., rows, cols]."""
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    rows = (np.arange(oh) * sh)[:, None] + (np.arange(kh) * dh)[None, :]
    cols = (np.arange(ow) * sw)[:, None] + (np.arange(kw) * dw)[None, :]
    return rows[:, None, :, None], cols[None, :, None, :]


def _draw(rng, family, dtype):
    n, c, f = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kh = kw = int(rng.integers(1, 4))
    stride, pad, dil = [1, 1], [int(rng.integers(0, 2))] * 2, [1, 1]
    if family == "non_square":
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(2, 5))
        stride, pad = [int(rng.integers(1, 3)), int(rng.integers(1, 4))], [int(rng.integers(0, 2)), 1]
    if family == "dilation":
        kh = kw = 2
        dil = [2, int(rng.integers(1, 4))]
    if family == "padding_border":
        pad = [kh - 1, kw - 1] if kh > 1 else [1, 1]
    s = 2 if family in ("stride_remainder", "padding_border") else 1
    stride = [s, s] if family != "non_square" else stride
    if family == "kernel_full":                            # the kernel covers the padded input: OH = OW = 1
        kh, kw = int(rng.integers(2, 4)), int(rng.integers(2, 4))
        pad = [int(rng.integers(0, (kh + 1) // 2)), int(rng.integers(0, (kw + 1) // 2))]
    span_h, span_w = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    # H + 2p = span + stride * k + r: k whole strides past the first window, r rows never read
    h, w = (span - 2 * p + stride_ * int(rng.integers(0, 3)) for span, p, stride_ in
            ((span_h, pad[0], stride[0]), (span_w, pad[1], stride[1])))
    if family == "stride_remainder":
        h, w = h + 1, w + 1                                # r = 1 < stride 2
    if family == "kernel_full":
        h, w = span_h - 2 * pad[0], span_w - 2 * pad[1]
    while h < 1:                                           # keep H >= 1 without changing H + 2p mod stride
        h += stride[0]
    while w < 1:
        w += stride[1]
    return Draw({"x": rng.standard_normal((n, c, h, w)).astype(dtype),
                 "w": (rng.standard_normal((f, c, kh, kw)) / np.sqrt(c * kh * kw)).astype(dtype),
                 "b": rng.standard_normal(f).astype(dtype)},
                {}, {"stride": stride, "pad": pad, "dilation": dil})


def _patches(ns, a, h):
    x, w = a["x"], a["w"]
    (ph, pw) = h["pad"]
    xp = ns.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    rows, cols = window_index(xp.shape[2], xp.shape[3], w.shape[2], w.shape[3], h["stride"], h["dilation"])
    index = (slice(None), slice(None), rows, cols)
    return xp, index, xp[index]                               # (N, C, OH, OW, KH, KW)


def _forward(ns, a, c, h):
    _, _, p = _patches(ns, a, h)
    n, ch, oh, ow, kh, kw = p.shape
    f = a["w"].shape[0]
    cols = p.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, ch * kh * kw)
    out = ns.matmul(cols, a["w"].reshape(f, -1).T) + a["b"].reshape(1, f)
    return out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2)


def _vjp(ns, a, c, h, dout, *, strip=True):
    xp, index, p = _patches(ns, a, h)
    n, ch, oh, ow, kh, kw = p.shape
    f = a["w"].shape[0]
    d = dout.transpose(0, 2, 3, 1).reshape(n * oh * ow, f)
    cols = p.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, ch * kh * kw)
    dcols = ns.matmul(d, a["w"].reshape(f, -1)).reshape(n, oh, ow, ch, kh, kw).transpose(0, 3, 1, 2, 4, 5)
    dxp = ns.scatter_add(xp.shape, index, dcols)
    (ph, pw), (hh, ww) = h["pad"], a["x"].shape[2:]
    return {"x": dxp[:, :, ph:ph + hh, pw:pw + ww] if strip else dxp[:, :, :hh, :ww],
            "w": ns.matmul(d.T, cols).reshape(a["w"].shape),
            "b": ns.sum(d, 0)}


def _pair_or_int(v):
    return v[0] if v[0] == v[1] else tuple(v)


def _call(fwd, a, c, h):
    param = {"stride": _pair_or_int(h["stride"]), "pad": _pair_or_int(h["pad"])}
    if h["dilation"] != [1, 1]:
        param["dilation"] = _pair_or_int(h["dilation"])
    return fwd(a["x"], a["w"], a["b"], param)


def _plain(h):
    """Hyper-parameters CS231n's own conv_forward_naive takes: one stride, one pad, no dilation."""
    return h["stride"][0] == h["stride"][1] and h["pad"][0] == h["pad"][1] and h["dilation"] == [1, 1]


def _shrink(draw):
    x = draw.inputs["x"]
    for axis, name in ((0, "x"), (1, "c")):
        for i in range(x.shape[axis] if x.shape[axis] > 1 else 0):
            inputs = {**draw.inputs, "x": np.delete(x, i, axis)}
            if axis == 1:
                inputs["w"] = np.delete(draw.inputs["w"], i, 1)
            yield Draw(inputs, draw.constants, draw.hyper)
    fo = draw.inputs["w"].shape[0]
    for i in range(fo if fo > 1 else 0):
        yield Draw({**draw.inputs, "w": np.delete(draw.inputs["w"], i, 0), "b": np.delete(draw.inputs["b"], i)},
                   draw.constants, draw.hyper)


CONV2D = Op(
    name="conv2d",
    definition="2-d cross-correlation, x (N, C, H, W), w (F, C, KH, KW), b (F,), stride, zero padding and "
               "dilation as (h, w) pairs (torch.nn.functional.conv2d)",
    inputs=("x", "w", "b"), forward=_forward, vjp=_vjp, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.nn.functional.conv2d(a["x"], a["w"], a["b"], stride=h["stride"],
                                                            padding=h["pad"], dilation=h["dilation"]),
    jax=lambda jax, a, c, h: jax.lax.conv_general_dilated(
        a["x"], a["w"], h["stride"], [(p, p) for p in h["pad"]], rhs_dilation=h["dilation"],
        dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=jax.lax.Precision.HIGHEST)
    + a["b"].reshape(1, -1, 1, 1),
    cs231n=("conv_forward_naive", "conv_backward_naive", _call, lambda r: dict(zip(("x", "w", "b"), r)), _plain),
    slips=(Slip("padding_not_stripped", "padding rows not stripped from dx (the top-left corner of dxpad "
                "returned)", lambda ns, a, c, h, dout: {"x": _vjp(ns, a, c, h, dout, strip=False)["x"]}),),
    shrink=_shrink)
