"""Max pool backward that routes the gradient through the mask (window == window.max()): every
entry equal to the maximum receives the window's full upstream gradient. With distinct values that
is the one argmax and the gradient is right; when a window has a tied maximum (ReLU zeros, quantised
or padded inputs, repeated pixels) the gradient is counted once per tied entry instead of once in
total.
"""
import numpy as np

EXPECTED = {"op": "maxpool2d", "tensor": "dx", "slip": "ties_all_max",
            "shows_when": "ties in a pooling window"}


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.empty((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            mask = win == win.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += mask * dout[:, :, i, j][:, :, None, None]
    return dx
