"""Convolution whose dx is computed as a transposed convolution: dout is spread out by the stride
(stride - 1 zeros between entries), padded by the kernel extent - 1 and correlated with the flipped
kernel, and the padding is then cut off both sides. That assumes the windows tile the padded input
exactly. When (H + 2 pad - dilation (HH - 1) - 1) is not a multiple of the stride, the last few rows
(or columns) are covered by no window and the transposed convolution never produces them: dx comes
back that many rows short (a shape error). With exact division it is right. dw and db are right.
"""
import numpy as np

EXPECTED = {"op": "conv2d", "tensor": "dx", "slip": "stride_remainder",
            "shows_when": "(H + 2p - k) not a multiple of the stride, k the dilated kernel extent (also for W)"}


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _geometry(conv_param):
    return _pair(conv_param["stride"]), _pair(conv_param["pad"]), _pair(conv_param.get("dilation", 1))


def _windows(Ho, Wo, HH, WW, stride, dilation):
    """(i, j, rows, cols): the receptive field of output (i, j) in the padded input."""
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(Ho):
        for j in range(Wo):
            yield (i, j, slice(i * sh, i * sh + dh * (HH - 1) + 1, dh),
                   slice(j * sw, j * sw + dw * (WW - 1) + 1, dw))


def conv_forward_naive(x, w, b, conv_param):
    stride, (ph, pw), dil = _geometry(conv_param)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = 1 + (H + 2 * ph - dil[0] * (HH - 1) - 1) // stride[0]
    Wo = 1 + (W + 2 * pw - dil[1] * (WW - 1) - 1) // stride[1]
    out = np.empty((N, F, Ho, Wo), x.dtype)
    for i, j, rows, cols in _windows(Ho, Wo, HH, WW, stride, dil):
        out[:, :, i, j] = np.tensordot(xp[:, :, rows, cols], w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, conv_param)


def _transposed_conv(dout, w, stride, dilation):
    """Full correlation of the stride-dilated dout with the flipped kernel: the padded input's gradient."""
    N, F, Ho, Wo = dout.shape
    _, C, HH, WW = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw = dh * (HH - 1) + 1, dw * (WW - 1) + 1
    up = np.zeros((N, F, (Ho - 1) * sh + 1, (Wo - 1) * sw + 1), dout.dtype)
    up[:, :, ::sh, ::sw] = dout
    up = np.pad(up, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    Hp, Wp = up.shape[2] - kh + 1, up.shape[3] - kw + 1
    wf = w[:, :, ::-1, ::-1]
    dxp = np.zeros((N, C, Hp, Wp), dout.dtype)
    for a in range(HH):
        for c in range(WW):
            dxp += np.einsum("nfhw,fc->nchw", up[:, :, a * dh:a * dh + Hp, c * dw:c * dw + Wp], wf[:, :, a, c])
    return dxp


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, (ph, pw), dil = _geometry(conv_param)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dw = np.zeros_like(w)
    for i, j, rows, cols in _windows(dout.shape[2], dout.shape[3], w.shape[2], w.shape[3], stride, dil):
        dw += np.tensordot(dout[:, :, i, j], xp[:, :, rows, cols], axes=([0], [0]))
    db = dout.sum(axis=(0, 2, 3))
    dxp = _transposed_conv(dout, w, stride, dil)
    dx = dxp[:, :, ph:dxp.shape[2] - ph, pw:dxp.shape[3] - pw]
    return dx, dw, db
