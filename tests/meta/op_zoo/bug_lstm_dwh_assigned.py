"""LSTM over a sequence whose backward assigns dWh at each step instead of accumulating it: dWh =
prev_h^T da (=, not +=), so only the step the backward loop visits last (t = 0) is kept; dWx and db
accumulate correctly. Shows for more than one time step.
"""
import numpy as np

EXPECTED = {"op": "lstm", "tensor": "dWh", "slip": "dwh_assigned", "shows_when": "more than one time step (T > 1)"}


def sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=x.dtype)
    prev_h, prev_c = h0, np.zeros_like(h0)
    caches = []
    for t in range(T):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
        g = np.tanh(a[:, 3 * H:])
        next_c = f * prev_c + i * g
        next_h = o * np.tanh(next_c)
        caches.append((x[:, t], prev_h, prev_c, i, f, o, g, np.tanh(next_c)))
        h[:, t] = next_h
        prev_h, prev_c = next_h, next_c
    return h, (Wx, Wh, caches)


def lstm_backward(dh, cache):
    Wx, Wh, caches = cache
    N, T, H = dh.shape
    dx = np.zeros((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dtype=dh.dtype)
    dprev_h, dprev_c = np.zeros((N, H), dtype=dh.dtype), np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        xt, prev_h, prev_c, i, f, o, g, tc = caches[t]
        dnext_h = dh[:, t] + dprev_h
        dc = dprev_c + dnext_h * o * (1 - tc ** 2)
        do, df, di, dg = dnext_h * tc, dc * prev_c, dc * g, dc * i
        da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)], axis=1)
        dx[:, t] = da @ Wx.T
        dWx += xt.T @ da
        dWh = prev_h.T @ da
        db += da.sum(axis=0)
        dprev_h = da @ Wh.T
        dprev_c = dc * f
    return dx, dprev_h, dWx, dWh, db
