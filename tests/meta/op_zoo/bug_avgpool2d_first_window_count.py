"""Average pool backward that hoists the divisor out of the loop, computing the number of real
entries once, from the first (top-left) window, and using it for every window. With
count_include_pad=False and padding the corner window has fewer real entries than the interior
ones, so every other window's gradient is divided by too small a count. The forward counts each
window itself and is right. Shows with padding and count_include_pad=False.
"""
import numpy as np

EXPECTED = {"op": "avgpool2d", "tensor": "dx", "slip": "first_window_count",
            "shows_when": "padding with count_include_pad=False (windows with different real counts)"}


def avg_pool_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    real = np.pad(np.ones((H, W), x.dtype), pad)
    Ho, Wo = 1 + (H + 2 * pad - ph) // s, 1 + (W + 2 * pad - pw) // s
    out = np.empty((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
            if pool_param.get("count_include_pad", True):
                count = ph * pw
            else:
                count = real[rows, cols].sum()
            out[:, :, i, j] = xp[:, :, rows, cols].sum(axis=(2, 3)) / count
    return out, (x, pool_param)


def avg_pool_backward(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    N, C, H, W = x.shape
    real = np.pad(np.ones((H, W), x.dtype), pad)
    count = ph * pw if pool_param.get("count_include_pad", True) else real[:ph, :pw].sum()
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dout.dtype)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dxp[:, :, i * s:i * s + ph, j * s:j * s + pw] += dout[:, :, i, j][:, :, None, None] / count
    return dxp[:, :, pad:pad + H, pad:pad + W]
