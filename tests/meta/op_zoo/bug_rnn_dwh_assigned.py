"""RNN over a sequence whose backward assigns dWh at each step instead of accumulating it:
dWh = prev_h^T da (=, not +=), so only the last step the backward loop visits (t = 0) is kept. dWx
and db accumulate correctly. Shows for more than one time step.
"""
import numpy as np

EXPECTED = {"op": "rnn", "tensor": "dWh", "slip": "dwh_assigned", "shows_when": "more than one time step (T > 1)"}


def rnn_forward(x, h0, Wx, Wh, b):
    hs, prev = [], h0
    for t in range(x.shape[1]):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        hs.append(prev)
    return np.stack(hs, axis=1), (x, h0, Wx, Wh, hs)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, hs = cache
    N, T, H = dh.shape
    dx = np.zeros_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H, dtype=dh.dtype)
    dprev = np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + dprev) * (1 - hs[t] ** 2)
        prev = hs[t - 1] if t > 0 else h0
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh = prev.T @ da
        db += da.sum(axis=0)
        dprev = da @ Wh.T
    return dx, dprev, dWx, dWh, db
