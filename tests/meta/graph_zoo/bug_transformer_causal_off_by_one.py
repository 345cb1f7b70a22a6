"""A transformer block whose causal mask is off by one: query i also sees key i + 1 (np.tril(..., k=1)),
a future token -- forward and backward consistent with each other, the output itself wrong."""
import numpy as np

from reference.networks import attention_backward, transformer_block

EXPECTED = {"arch": "transformer_block", "node": "attn", "tensor": "attn: out", "graph_tensor": "out",
            "graph_node": None, "words": "output"}


def attention_forward(q, k, v, scale):
    t = q.shape[2]
    s = scale * (q @ k.transpose(0, 1, 3, 2))
    s = np.where(np.tril(np.ones((t, t), dtype=bool), k=1), s, -np.inf)     # the bug: k=1 sees the next key
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return p @ v, (q, k, v, p, scale)


def net(values, constants, hyper, dout):
    return transformer_block(values, constants, hyper, dout, attention=(attention_forward, attention_backward))
