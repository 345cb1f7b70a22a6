"""RNN step whose backward takes tanh's derivative at the wrong place: the cache keeps the
pre-activation a = x Wx + prev_h Wh + b and the backward writes 1 - a**2, the textbook formula
1 - tanh(a)**2 with the tanh left out (it is 1 - next_h**2). Every gradient is off wherever a != 0.
"""
import numpy as np

EXPECTED = {"op": "rnn_step", "tensor": "dx", "slip": "tanh_prime_of_preactivation", "shows_when": "always"}


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    a = x @ Wx + prev_h @ Wh + b
    next_h = np.tanh(a)
    return next_h, (x, prev_h, Wx, Wh, a)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, a = cache
    da = dnext_h * (1 - a ** 2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
