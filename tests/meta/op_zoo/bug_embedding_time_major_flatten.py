"""Word embedding backward that accumulates with np.add.at on flattened views taken in two different
orders: the indices flattened batch-major, x.reshape(-1), and the gradient rows time-major,
dout.transpose(1, 0, 2).reshape(-1, D), as in the RNN code it was taken from, which keeps
(T, N, D). Both have N * T rows, so nothing complains; row k of the gradient is added to the word at
a different (n, t). Shows whenever N > 1 and T > 1; a single sequence (N = 1) is right.
"""
import numpy as np

EXPECTED = {"op": "embedding", "tensor": "dW", "slip": "time_major_flatten",
            "shows_when": "more than one sequence of more than one step (N > 1 and T > 1)"}


def word_embedding_forward(x, W):
    out = W[x]
    return out, (x, W)


def word_embedding_backward(dout, cache):
    x, W = cache
    D = W.shape[1]
    dW = np.zeros_like(W)
    np.add.at(dW, x.reshape(-1), dout.transpose(1, 0, 2).reshape(-1, D))
    return dW
