"""Naive convolution backward that loops over the samples with dw = np.zeros_like(w) one level too
deep, inside the loop over n: each sample's contribution replaces the previous one, and dw comes back
as the gradient of the last sample alone. dx and db are right. Shows whenever the batch has more
than one sample (N > 1); a single-sample check passes.
"""
import numpy as np

EXPECTED = {"op": "conv2d", "tensor": "dw", "slip": "dw_last_sample",
            "shows_when": "a batch of more than one sample (N > 1)"}


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def conv_forward_naive(x, w, b, conv_param):
    (sh, sw), (ph, pw) = _pair(conv_param["stride"]), _pair(conv_param["pad"])
    dh, dw = _pair(conv_param.get("dilation", 1))
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = 1 + (H + 2 * ph - dh * (HH - 1) - 1) // sh
    Wo = 1 + (W + 2 * pw - dw * (WW - 1) - 1) // sw
    out = np.empty((N, F, Ho, Wo), x.dtype)
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                win = xp[n, :, i * sh:i * sh + dh * (HH - 1) + 1:dh, j * sw:j * sw + dw * (WW - 1) + 1:dw]
                out[n, :, i, j] = np.sum(win * w, axis=(1, 2, 3)) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    (sh, sw), (ph, pw) = _pair(conv_param["stride"]), _pair(conv_param["pad"])
    dh, dw_ = _pair(conv_param.get("dilation", 1))
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)
    for n in range(N):
        dw = np.zeros_like(w)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                rows = slice(i * sh, i * sh + dh * (HH - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw_ * (WW - 1) + 1, dw_)
                g = dout[n, :, i, j]
                dw += g[:, None, None, None] * xp[n, :, rows, cols]
                dxp[n, :, rows, cols] += np.tensordot(g, w, axes=1)
    db = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, ph:ph + H, pw:pw + W]
    return dx, dw, db
