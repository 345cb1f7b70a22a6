"""A transformer block whose attention backward leaves out softmax's row-sum term: dS = P dP instead of
P (dP - rowsum(dP P)) -- the rowsum(dO o O) term of FlashAttention's backward forgotten."""
from reference.networks import attention_forward, transformer_block

EXPECTED = {"arch": "transformer_block", "node": "attn", "tensor": "attn: dq", "graph_tensor": "delta k_heads",
            "words": "rowsum"}


def attention_backward(dout, cache):
    q, k, v, probs, a, keep, p, scale = cache
    dv = a.transpose(0, 1, 3, 2) @ dout
    dp = (dout @ v.transpose(0, 1, 3, 2)) * keep / (1 - p)
    ds = probs * dp                                          # the bug: no "- rowsum(dP * P)"
    return scale * (ds @ k), scale * (ds.transpose(0, 1, 3, 2) @ q), dv


def net(values, constants, hyper, dout):
    return transformer_block(values, constants, hyper, dout, attention=(attention_forward, attention_backward))
