"""A transformer block whose attention backward applies the softmax scale twice to dq (once folded into
q, once again after the product): dq = scale^2 dS k."""
from reference.networks import attention_forward, transformer_block

EXPECTED = {"arch": "transformer_block", "node": "attn", "tensor": "attn: dq", "graph_tensor": "delta q_heads",
            "words": "scale"}


def attention_backward(dout, cache):
    q, k, v, probs, a, keep, p, scale = cache
    dv = a.transpose(0, 1, 3, 2) @ dout
    dp = (dout @ v.transpose(0, 1, 3, 2)) * keep / (1 - p)
    ds = probs * (dp - (dp * probs).sum(axis=-1, keepdims=True))
    return scale * scale * (ds @ k), scale * (ds.transpose(0, 1, 3, 2) @ q), dv    # the bug: scale twice


def net(values, constants, hyper, dout):
    return transformer_block(values, constants, hyper, dout, attention=(attention_forward, attention_backward))
