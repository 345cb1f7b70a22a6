"""Max pool backward that finds each window's flat argmax and unravels it with the pool height where
the row length is the pool width: r, c = divmod(idx, pool_height). For a square pool the two are
equal and the gradient lands on the maximum; for a non-square pool (pool_height != pool_width) it
lands on some other entry of the window or beside it (or indexes past the input).
"""
import numpy as np

EXPECTED = {"op": "maxpool2d", "tensor": "dx", "slip": "unravel_width",
            "also": ("call",),  # or it indexes past the input and raises
            "shows_when": "a non-square pool (pool_height != pool_width)"}


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    Ho, Wo = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.empty((N, C, Ho, Wo), x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, c, i, j] = np.max(x[n, c, i * s:i * s + ph, j * s:j * s + pw])
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, Ho, Wo = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    idx = np.argmax(x[n, c, i * s:i * s + ph, j * s:j * s + pw])
                    r, col = divmod(idx, ph)
                    dx[n, c, i * s + r, j * s + col] += dout[n, c, i, j]
    return dx
