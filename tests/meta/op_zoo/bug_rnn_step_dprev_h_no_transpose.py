"""RNN step whose backward sends the gradient to the previous state through Wh instead of Wh^T:
dprev_h = da @ Wh. Wh is square (H, H), so the shapes agree and nothing raises; the values are right
only for a symmetric Wh. Shows whenever H > 1 (a 1x1 Wh is its own transpose).
"""
import numpy as np

EXPECTED = {"op": "rnn_step", "tensor": "dprev_h", "slip": "dprev_h_no_transpose",
            "shows_when": "more than one hidden unit (H > 1) with a non-symmetric Wh"}


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    dx = da @ Wx.T
    dprev_h = da @ Wh
    return dx, dprev_h, x.T @ da, prev_h.T @ da, da.sum(axis=0)
