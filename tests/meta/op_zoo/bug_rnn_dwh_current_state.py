"""RNN over a sequence whose backward pairs each step's pre-activation gradient with the wrong state
in dWh: h[:, t] (the state the step produced) where h[:, t - 1] (the state it read, h0 at t = 0)
belongs -- an off-by-one in the time index. Everything else is right. Shows always.
"""
import numpy as np

EXPECTED = {"op": "rnn", "tensor": "dWh", "slip": "dwh_current_state", "shows_when": "always"}


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=x.dtype)
    prev = h0
    for t in range(T):
        prev = np.tanh(x[:, t] @ Wx + prev @ Wh + b)
        h[:, t] = prev
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    N, T, H = dh.shape
    dx = np.zeros_like(x)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H, dtype=dh.dtype)
    dprev = np.zeros_like(h0)
    for t in reversed(range(T)):
        da = (dh[:, t] + dprev) * (1 - h[:, t] ** 2)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += h[:, t].T @ da
        db += da.sum(axis=0)
        dprev = da @ Wh.T
    return dx, dprev, dWx, dWh, db
