"""The five networks ``bpcheck graph`` checks, written as a PyTorch user would -- correct, by autograd.

What it is: the architectures of ``bpcheck.ops.architectures`` (residual_mlp, cnn, tied_embedding,
transformer_block, lstm_lm) with bpcheck's graph contract,

    net(values, constants, hyper, dout) -> (out, grads)

``values`` the inputs and parameters by leaf name (NumPy arrays), ``constants`` the labels, ids and
masks, ``hyper`` each node's hyper-parameters by node name, ``dout`` the cotangent of the output.
Each function builds the forward pass from ``torch.nn.functional`` and differentiates it with
``torch.autograd.grad(out, leaves, grad_outputs=dout)``; ``out`` and ``grads`` {leaf: dC/dleaf} come
back as NumPy arrays in the inputs' dtype. It imports neither ``reference`` nor ``bpcheck``.

How it differs from ``reference/networks.py`` (hand-written NumPy forward and backward passes): no
backward pass is written at all -- autograd derives it -- and the forward pass is torch's built-ins:
``F.linear`` (the affine op flattens all but the first axis), ``F.layer_norm``, ``F.conv2d`` with the
stride, padding and dilation of ``hyper["conv"]``, ``F.batch_norm(training=True)`` (batch statistics,
biased variance), ``F.max_pool2d`` with ``hyper["pool"]``'s window and stride, ``F.cross_entropy``
(mean over N, CS231n's softmax_loss), ``F.embedding``, ``F.gelu(approximate="none")`` and
``F.scaled_dot_product_attention(is_causal=True, scale=hyper["attn"]["scale"])``. The LSTM is a step
loop of torch ops in CS231n's gate order i, f, o, g (not torch.nn.LSTM's i, f, g, o) with one bias and
c0 = 0, starting from the input h0. Because it returns no deltas, bpcheck judges the leaf gradients
and the output against the whole graph's truth (no node-by-node judgement).

The transformer's graph passes an attention mask, an additive bias and a dropout keep-mask as constants.
In the plain families they are the identity (all True, 0, all True) and the block calls sdpa with
``is_causal=True`` as one would; with a padding mask, a bias or a given keep-mask (the masked_keys,
additive_bias and dropout_keep families) it writes the attention out in torch ops, a row with no key
giving 0 as sdpa's math kernel does.

Check it:

    bpcheck graph transformer_block --fn examples/torch_networks.py:transformer_block

(and likewise residual_mlp, cnn, tied_embedding, lstm_lm), or ``tests/test_graph_examples.py``.
"""
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["residual_mlp", "cnn", "tied_embedding", "transformer_block", "lstm_lm"]


def _leaves(values):
    return {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in values.items()}


def _differentiate(out, leaves, dout):
    """(out, {leaf: dC/dleaf}) as NumPy arrays: autograd's vector-Jacobian product with ``dout``."""
    cotangent = torch.tensor(np.asarray(dout), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_outputs=cotangent)
    return out.detach().numpy(), {k: gr.numpy() for k, gr in zip(leaves, grads)}


def _affine(x, w, b):
    return F.linear(x.flatten(1), w.T, b)


def _labels(y):
    return torch.as_tensor(np.asarray(y), dtype=torch.long)


def residual_mlp(values, constants, hyper, dout):
    p = _leaves(values)
    x = p["x"]
    h = F.relu(_affine(x, p["w1"], p["b1"]))
    skip = _affine(h, p["w2"], p["b2"]) + x
    norm = F.layer_norm(skip, skip.shape[-1:], p["gamma"], p["beta"], eps=hyper["norm"]["eps"])
    loss = F.cross_entropy(_affine(norm, p["w3"], p["b3"]), _labels(constants["y"]))
    return _differentiate(loss, p, dout)


def cnn(values, constants, hyper, dout):
    p = _leaves(values)
    conv, pool = hyper["conv"], hyper["pool"]
    z = F.conv2d(p["x"], p["W1"], p["b1"], stride=tuple(conv["stride"]), padding=tuple(conv["pad"]),
                 dilation=tuple(conv.get("dilation", (1, 1))))
    z = F.batch_norm(z, None, None, p["gamma"], p["beta"], training=True, eps=hyper["bn"]["eps"])
    z = F.max_pool2d(F.relu(z), (pool["pool_height"], pool["pool_width"]), stride=pool["stride"])
    z = F.relu(_affine(z, p["W2"], p["b2"]))
    loss = F.cross_entropy(_affine(z, p["W3"], p["b3"]), _labels(constants["y"]))
    return _differentiate(loss, p, dout)


def tied_embedding(values, constants, hyper, dout):
    p = _leaves(values)
    embed = F.embedding(_labels(constants["ids"]), p["W"])
    logits = _affine(embed, p["W"].T, p["b"])                 # the output layer reuses W
    loss = F.cross_entropy(logits, _labels(constants["y"]))
    return _differentiate(loss, p, dout)


def _attention(q, k, v, mask, bias, keep, attn):
    """F.scaled_dot_product_attention for plain causal attention; written out in torch ops when there is a
    padding mask, a bias or a given dropout keep-mask (sdpa takes no given dropout mask), a query row with no
    key giving 0 as sdpa's math kernel does."""
    if mask.all() and not bias.any() and keep.all() and attn.get("dropout_p", 0.0) == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn["scale"])
    t = q.shape[2]
    allowed = torch.ones(t, t, dtype=torch.bool).tril() & torch.as_tensor(mask)
    scores = (attn["scale"] * q @ k.transpose(-2, -1) + torch.as_tensor(bias)).masked_fill(~allowed, float("-inf"))
    any_key = allowed.any(dim=-1, keepdim=True).expand(scores.shape)
    probs = torch.where(any_key, torch.softmax(scores.masked_fill(~any_key, 0.0), dim=-1), torch.zeros_like(scores))
    return (probs * torch.as_tensor(keep) / (1 - attn.get("dropout_p", 0.0))) @ v


def transformer_block(values, constants, hyper, dout):
    mask, bias, keep = (np.asarray(constants[k]) for k in ("mask", "bias", "keep"))
    attn = hyper["attn"]
    p = _leaves(values)
    x = p["x"]
    b, t, heads, dh = hyper["q_split"]["shape"]
    c = heads * dh

    def split(z):                                              # (B T, C) -> (B, H, T, C / H)
        return z.reshape(b, t, heads, dh).transpose(1, 2)

    ln1 = F.layer_norm(x, (c,), p["g1"], p["b1"], eps=hyper["ln1"]["eps"])
    q, k, v = (split(_affine(ln1, p[f"W{n}"], p[f"b{n}"])) for n in "qkv")
    a = _attention(q, k, v, mask, bias, keep, attn)
    res1 = x + _affine(a.transpose(1, 2).reshape(b * t, c), p["Wo"], p["bo"])
    ln2 = F.layer_norm(res1, (c,), p["g2"], p["b2"], eps=hyper["ln2"]["eps"])
    mlp = _affine(F.gelu(_affine(ln2, p["W1"], p["c1"]), approximate="none"), p["W2"], p["c2"])
    return _differentiate(res1 + mlp, p, dout)


def lstm_lm(values, constants, hyper, dout):
    p = _leaves(values)
    ids = _labels(constants["ids"])
    n, t = ids.shape
    embed = F.embedding(ids, p["W_embed"])                     # (N, T, D)
    h, c = p["h0"], torch.zeros_like(p["h0"])
    hs = []
    for step in range(t):
        a = embed[:, step] @ p["Wx"] + h @ p["Wh"] + p["b"]
        i, f, o, g = a.chunk(4, dim=1)                         # CS231n's order: i, f, o, g
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    steps = torch.stack(hs, dim=1).reshape(n * t, -1)
    loss = F.cross_entropy(_affine(steps, p["W_out"], p["b_out"]), _labels(constants["y"]))
    return _differentiate(loss, p, dout)
