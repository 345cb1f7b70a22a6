"""Word embedding backward written as a fancy-indexed in-place add, dW[x] += dout. NumPy evaluates
it as dW[x] = dW[x] + dout: an index that appears several times is written several times and only
the last write survives, so a word used more than once in the batch gets the gradient of one of its
uses instead of the sum of all of them (np.add.at accumulates). Shows only with repeated indices.
"""
import numpy as np

EXPECTED = {"op": "embedding", "tensor": "dW", "slip": "fancy_index_add",
            "shows_when": "repeated indices"}


def word_embedding_forward(x, W):
    out = W[x]
    return out, (x, W.shape, W.dtype)


def word_embedding_backward(dout, cache):
    x, shape, dtype = cache
    dW = np.zeros(shape, dtype)
    dW[x] += dout
    return dW
