"""Convolution whose backward accumulates the gradient of the zero-padded input correctly and then
crops it to x's shape from the top-left corner, dx = dxp[:, :, :H, :W], instead of removing the pad
from every side, dxp[:, :, pad:pad + H, pad:pad + W]. The shape is right; the region is shifted by
the padding, so dx holds the gradients of the top and left padding and loses the bottom and right
rows of the image. Shows whenever pad > 0. dw and db are right.
"""
import numpy as np

EXPECTED = {"op": "conv2d", "tensor": "dx", "slip": "pad_crop_corner",
            "shows_when": "zero padding (pad > 0)"}


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _windows(Ho, Wo, HH, WW, stride, dilation):
    """(i, j, rows, cols): the receptive field of output (i, j) in the padded input."""
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(Ho):
        for j in range(Wo):
            yield (i, j, slice(i * sh, i * sh + dh * (HH - 1) + 1, dh),
                   slice(j * sw, j * sw + dw * (WW - 1) + 1, dw))


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
    return out, (xp, w, x.shape, stride, dil)


def conv_backward_naive(dout, cache):
    xp, w, (N, C, H, W), stride, dil = cache
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i, j, rows, cols in _windows(dout.shape[2], dout.shape[3], w.shape[2], w.shape[3], stride, dil):
        g = dout[:, :, i, j]
        dw += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))
        dxp[:, :, rows, cols] += np.tensordot(g, w, axes=([1], [0]))
    db = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, :H, :W]
    return dx, dw, db
