"""A transformer block whose causal mask is off by one: query i also sees key i + 1 (np.tril(..., k=1)),
a future token -- forward and backward consistent with each other, the output itself wrong."""
import numpy as np

from reference.networks import attention_backward, transformer_block

EXPECTED = {"arch": "transformer_block", "node": "attn", "tensor": "attn: out", "graph_tensor": "out",
            "graph_node": None, "words": "output"}


def attention_forward(q, k, v, scale, mask, bias, keep, p):
    t = q.shape[2]
    s = scale * (q @ k.transpose(0, 1, 3, 2)) + bias
    allowed = np.broadcast_to(np.tril(np.ones((t, t), dtype=bool), k=1) & mask, s.shape)   # the bug: k=1
    any_key = allowed.any(axis=-1, keepdims=True)
    top = np.where(any_key, np.where(allowed, s, -np.inf).max(axis=-1, keepdims=True), 0)
    e = np.where(allowed, np.exp(np.where(allowed, s - top, 0)), 0)
    probs = np.where(any_key, e / np.where(any_key, e.sum(axis=-1, keepdims=True), 1), 0).astype(s.dtype)
    a = (probs * keep / (1 - p)).astype(s.dtype)
    return a @ v, (q, k, v, probs, a, keep, p, scale)


def net(values, constants, hyper, dout):
    return transformer_block(values, constants, hyper, dout, attention=(attention_forward, attention_backward))
