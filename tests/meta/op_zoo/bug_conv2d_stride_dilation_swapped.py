"""Convolution whose backward scatters dout back onto the input with a helper declared
_col2im(dout, w, shape, dilation, stride) but called as _col2im(dout, w, shape, stride, dilation):
the input gradient is spread over windows placed with the dilation as step and the stride as the
spacing of the taps. dw (computed in its own loop) and db are right. Shows whenever the stride and
the dilation differ (as wrong values, or as a broadcasting error when the swapped windows run off
the input); with stride == dilation, e.g. both 1, the swap is invisible.
"""
import numpy as np

EXPECTED = {"op": "conv2d", "tensor": "dx", "slip": "stride_dilation_swapped",
            "shows_when": "a stride different from the dilation"}


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _windows(Ho, Wo, HH, WW, stride, dilation):
    """(i, j, rows, cols): the receptive field of output (i, j) in the padded input."""
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(Ho):
        for j in range(Wo):
            yield (i, j, slice(i * sh, i * sh + dh * (HH - 1) + 1, dh),
                   slice(j * sw, j * sw + dw * (WW - 1) + 1, dw))


def _col2im(dout, w, shape, dilation, stride):
    """Scatter dout through w onto an array of the padded input's shape."""
    dxp = np.zeros(shape, dout.dtype)
    for i, j, rows, cols in _windows(dout.shape[2], dout.shape[3], w.shape[2], w.shape[3], stride, dilation):
        dxp[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp


def conv_forward_naive(x, w, b, conv_param):
    stride, (ph, pw) = _pair(conv_param["stride"]), _pair(conv_param["pad"])
    dil = _pair(conv_param.get("dilation", 1))
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = 1 + (H + 2 * ph - dil[0] * (HH - 1) - 1) // stride[0]
    Wo = 1 + (W + 2 * pw - dil[1] * (WW - 1) - 1) // stride[1]
    out = np.empty((N, F, Ho, Wo), x.dtype)
    for i, j, rows, cols in _windows(Ho, Wo, HH, WW, stride, dil):
        out[:, :, i, j] = np.tensordot(xp[:, :, rows, cols], w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (xp, w, (ph, pw), stride, dil)


def conv_backward_naive(dout, cache):
    xp, w, (ph, pw), stride, dil = cache
    dw = np.zeros_like(w)
    for i, j, rows, cols in _windows(dout.shape[2], dout.shape[3], w.shape[2], w.shape[3], stride, dil):
        dw += np.tensordot(dout[:, :, i, j], xp[:, :, rows, cols], axes=([0], [0]))
    db = np.sum(dout, axis=(0, 2, 3))
    dxp = _col2im(dout, w, xp.shape, stride, dil)
    dx = dxp[:, :, ph:xp.shape[2] - ph, pw:xp.shape[3] - pw]
    return dx, dw, db
