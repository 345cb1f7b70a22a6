"""Word embedding backward that keeps one gradient buffer per weight shape and accumulates into it
with np.add.at, to spare a (V, D) allocation per step, but never zeroes it (the zero_grad step of
the framework it imitates): the first backward call is right, every later call returns the sum of
the gradients of all the calls so far. Shows on the second and later backward calls in the same
process.
"""
import numpy as np

EXPECTED = {"op": "embedding", "tensor": "dW", "slip": "grad_buffer_not_zeroed",
            "also": ("state",),  # the state check names it first: A, then B, then A gives another answer
            "shows_when": "a second backward call in the same process"}

_grad_buffers = {}


def word_embedding_forward(x, W):
    out = W[x]
    return out, (x, W.shape, W.dtype)


def word_embedding_backward(dout, cache):
    x, shape, dtype = cache
    key = (shape, np.dtype(dtype).str)
    if key not in _grad_buffers:
        _grad_buffers[key] = np.zeros(shape, dtype)
    dW = _grad_buffers[key]
    np.add.at(dW, x, dout)
    return dW.copy()
