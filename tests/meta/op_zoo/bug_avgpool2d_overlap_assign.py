"""Average pool backward that writes each window's share into the padded gradient with = instead of
+=: dxp[:, :, window] = dout / count. With non-overlapping windows that is right; with overlapping
windows (stride < pool size) each shared entry keeps only the last window's share instead of the sum
of all of them.
"""
import numpy as np

EXPECTED = {"op": "avgpool2d", "tensor": "dx", "slip": "overlap_assign",
            "shows_when": "overlapping windows (stride < pool size)"}


def avg_pool_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    include_pad = pool_param.get("count_include_pad", True)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    real = np.pad(np.ones((H, W), x.dtype), pad)
    Ho, Wo = 1 + (H + 2 * pad - ph) // s, 1 + (W + 2 * pad - pw) // s
    counts = np.empty((Ho, Wo), x.dtype)
    out = np.empty((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
            counts[i, j] = ph * pw if include_pad else real[rows, cols].sum()
            out[:, :, i, j] = xp[:, :, rows, cols].sum(axis=(2, 3)) / counts[i, j]
    return out, (x.shape, pool_param, counts)


def avg_pool_backward(dout, cache):
    (N, C, H, W), pool_param, counts = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dout.dtype)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dxp[:, :, i * s:i * s + ph, j * s:j * s + pw] = (dout[:, :, i, j] / counts[i, j])[:, :, None, None]
    return dxp[:, :, pad:pad + H, pad:pad + W]
