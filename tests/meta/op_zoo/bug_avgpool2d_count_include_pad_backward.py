"""Average pool whose forward honours count_include_pad=False (each window divided by the number of
its real, unpadded entries) but whose backward always spreads dout / (pool_height * pool_width):
the border windows that overlap the padding pass back too little gradient. Shows with padding and
count_include_pad=False; without padding, or with the default count_include_pad=True, it is right.
"""
import numpy as np

EXPECTED = {"op": "avgpool2d", "tensor": "dx", "slip": "count_include_pad_backward",
            "shows_when": "padding with count_include_pad=False (the border windows)"}


def avg_pool_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    include_pad = pool_param.get("count_include_pad", True)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    real = np.pad(np.ones((H, W), x.dtype), pad)
    Ho, Wo = 1 + (H + 2 * pad - ph) // s, 1 + (W + 2 * pad - pw) // s
    out = np.empty((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
            count = ph * pw if include_pad else real[rows, cols].sum()
            out[:, :, i, j] = xp[:, :, rows, cols].sum(axis=(2, 3)) / count
    return out, (x.shape, pool_param)


def avg_pool_backward(dout, cache):
    (N, C, H, W), pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dout.dtype)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dxp[:, :, i * s:i * s + ph, j * s:j * s + pw] += dout[:, :, i, j][:, :, None, None] / (ph * pw)
    return dxp[:, :, pad:pad + H, pad:pad + W]
