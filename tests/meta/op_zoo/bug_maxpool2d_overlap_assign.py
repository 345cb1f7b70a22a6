"""Max pool backward that writes each window's one-hot gradient into dx with = instead of +=:
dx[:, :, window] = onehot * dout. With non-overlapping windows (stride >= pool size) each entry is
written once and that is right. When windows overlap (stride < pool size) the later window overwrites
the earlier one's gradient in the shared entries, both a shared maximum's sum and the earlier
window's maximum, which is reset to zero.
"""
import numpy as np

EXPECTED = {"op": "maxpool2d", "tensor": "dx", "slip": "overlap_assign",
            "shows_when": "overlapping windows (stride < pool size)"}


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.zeros((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = np.max(x[:, :, i * s:i * s + ph, j * s:j * s + pw], axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, _, _ = x.shape
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = x[:, :, i * s:i * s + ph, j * s:j * s + pw].reshape(N, C, -1)
            onehot = np.zeros_like(win)
            np.put_along_axis(onehot, win.argmax(axis=2)[:, :, None], 1, axis=2)
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] = (
                onehot.reshape(N, C, ph, pw) * dout[:, :, i, j][:, :, None, None])
    return dx
