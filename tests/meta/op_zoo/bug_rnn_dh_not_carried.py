"""RNN over a sequence whose backward forgets the recurrent gradient: each step is given only the
upstream dh[:, t], not dh[:, t] + dprev_h from the step after it, so no gradient flows back through
time (a frequent first attempt at CS231n's rnn_backward). Shows for more than one time step.
"""
import numpy as np

EXPECTED = {"op": "rnn", "tensor": "dx", "slip": "dh_not_carried", "shows_when": "more than one time step (T > 1)"}


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
        da = dh[:, t] * (1 - h[:, t] ** 2)
        prev = h[:, t - 1] if t > 0 else h0
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += prev.T @ da
        db += da.sum(axis=0)
        dprev = da @ Wh.T
    return dx, dprev, dWx, dWh, db
