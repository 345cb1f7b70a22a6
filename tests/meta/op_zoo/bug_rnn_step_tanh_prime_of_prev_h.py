"""RNN step whose backward takes tanh's derivative from the wrong state: 1 - prev_h**2 (the state
that came in) where 1 - next_h**2 (the state this step produced) belongs -- a cache that kept the
input's h instead of the output's. Every gradient is off unless prev_h happens to equal next_h.
"""
import numpy as np

EXPECTED = {"op": "rnn_step", "tensor": "dx", "slip": "tanh_prime_of_prev_h", "shows_when": "always"}


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh = cache
    da = dnext_h * (1 - prev_h ** 2)
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
