"""LSTM step whose backward passes the cell gradient back without the forget gate: dprev_c = dc,
where next_c = f * prev_c + i * g makes it f * dc. Only dprev_c is wrong (the gates' gradients use dc
correctly). Shows always (f is a sigmoid, never exactly 1).
"""
import numpy as np

EXPECTED = {"op": "lstm_step", "tensor": "dprev_c", "slip": "dprev_c_no_forget", "shows_when": "always"}


def sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc ** 2)
    do = dnext_h * tc
    df = dc * prev_c
    dprev_c = dc
    di, dg = dc * g, dc * i
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)], axis=1)
    return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(axis=0)
