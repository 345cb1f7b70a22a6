"""Readable NumPy reference for whole networks: a residual MLP, CS231n's three-layer convnet with spatial
batch norm, a weight-tied embedding model, a pre-norm transformer block and a character-level LSTM
language model -- the architectures ``bpcheck graph`` checks.

Each is one function with bpcheck's graph contract,

    net(values, constants, hyper, dout) -> (out, grads, deltas, outputs)

``values`` the inputs and parameters by name, ``constants`` the labels (and ids), ``hyper`` each
node's hyper-parameters by node name, ``dout`` the cotangent of the loss (a scalar; training sends
1). ``grads`` holds dC/d(name) for every input and parameter, ``deltas`` dC/d(node output) for each
node, ``outputs`` each node's forward value (so bpcheck can judge every node on its own): the
forward pass keeps each layer's cache, the backward pass walks the layers in reverse,
and a tensor read twice gets the sum of both gradients (``+=``). Built on ``reference.layers``;
imports neither torch, jax nor bpcheck.
"""
import numpy as np

from reference.activations import d_gelu, gelu
from reference.layers import (affine_backward, affine_forward, conv_backward_naive, conv_forward_naive,
                              layernorm_backward, layernorm_forward, lstm_backward, lstm_forward,
                              max_pool_backward_naive, max_pool_forward_naive, softmax_loss,
                              spatial_batchnorm_backward, spatial_batchnorm_forward, word_embedding_backward,
                              word_embedding_forward)

__all__ = ["residual_mlp", "cnn", "tied_embedding", "transformer_block", "lstm_lm",
           "attention_forward", "attention_backward"]


def _relu(z):
    return np.maximum(z, 0), z


def _relu_backward(dout, z):
    return np.where(z > 0, dout, 0).astype(dout.dtype)


def _loss(scores, y, dout):
    """softmax_loss with its scalar cotangent folded in: (loss, dC/dscores = dout * dloss/dscores)."""
    loss, dscores = softmax_loss(scores, y)
    return loss, (dscores * dout).astype(scores.dtype)


def residual_mlp(values, constants, hyper, dout):
    """x (N, D) -> fc1 -> relu -> fc2 -> skip = fc2 + x -> norm (layer norm) -> fc3 -> softmax loss."""
    v = values
    fc1, c1 = affine_forward(v["x"], v["w1"], v["b1"])
    relu, cr = _relu(fc1)
    fc2, c2 = affine_forward(relu, v["w2"], v["b2"])
    skip = fc2 + v["x"]                                          # x is read twice: by fc1 and here
    norm, cn = layernorm_forward(skip, v["gamma"], v["beta"], hyper["norm"])
    fc3, c3 = affine_forward(norm, v["w3"], v["b3"])
    loss, dfc3 = _loss(fc3, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "fc3": dfc3}
    d["norm"], g["w3"], g["b3"] = affine_backward(dfc3, c3)
    d["skip"], g["gamma"], g["beta"] = layernorm_backward(d["norm"], cn)
    d["fc2"] = d["skip"]                                         # d(fc2 + x)/d fc2 = 1
    d["relu"], g["w2"], g["b2"] = affine_backward(d["fc2"], c2)
    d["fc1"] = _relu_backward(d["relu"], cr)
    g["x"], g["w1"], g["b1"] = affine_backward(d["fc1"], c1)
    g["x"] = g["x"] + d["skip"]                                  # accumulate: the skip's share of dx
    outputs = {"fc1": fc1, "relu": relu, "fc2": fc2, "skip": skip, "norm": norm, "fc3": fc3, "loss": loss}
    return loss, g, d, outputs


def cnn(values, constants, hyper, dout):
    """x (N, C, H, W) -> conv -> bn (spatial batch norm) -> relu1 -> pool (2x2 max) -> fc1 -> relu2 -> fc2
    -> softmax loss (CS231n's ThreeLayerConvNet with batch norm)."""
    v = values
    h = hyper
    conv, cc = conv_forward_naive(v["x"], v["W1"], v["b1"], {"stride": h["conv"]["stride"],
                                                              "pad": h["conv"]["pad"]})
    bn, cb = spatial_batchnorm_forward(conv, v["gamma"], v["beta"], {"mode": "train", "eps": h["bn"]["eps"]})
    relu1, r1 = _relu(bn)
    pool, cp = max_pool_forward_naive(relu1, h["pool"])
    fc1, c1 = affine_forward(pool, v["W2"], v["b2"])
    relu2, r2 = _relu(fc1)
    fc2, c2 = affine_forward(relu2, v["W3"], v["b3"])
    loss, dfc2 = _loss(fc2, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "fc2": dfc2}
    d["relu2"], g["W3"], g["b3"] = affine_backward(dfc2, c2)
    d["fc1"] = _relu_backward(d["relu2"], r2)
    d["pool"], g["W2"], g["b2"] = affine_backward(d["fc1"], c1)
    d["relu1"] = max_pool_backward_naive(d["pool"], cp)
    d["bn"] = _relu_backward(d["relu1"], r1)
    d["conv"], g["gamma"], g["beta"] = spatial_batchnorm_backward(d["bn"], cb)
    g["x"], g["W1"], g["b1"] = conv_backward_naive(d["conv"], cc)
    outputs = {"conv": conv, "bn": bn, "relu1": relu1, "pool": pool, "fc1": fc1, "relu2": relu2, "fc2": fc2,
               "loss": loss}
    return loss, g, d, outputs


def tied_embedding(values, constants, hyper, dout):
    """ids (N,) -> embed = W[ids] -> WT = W^T -> logits = embed WT + b -> softmax loss: W is read twice."""
    W, b = values["W"], values["b"]
    embed, ce = word_embedding_forward(constants["ids"], W)
    WT = W.T
    logits, cl = affine_forward(embed, WT, b)
    loss, dlogits = _loss(logits, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "logits": dlogits}
    d["embed"], d["WT"], g["b"] = affine_backward(dlogits, cl)
    g["W"] = word_embedding_backward(d["embed"], ce) + d["WT"].T  # both uses of W, summed
    return loss, g, d, {"embed": embed, "WT": WT, "logits": logits, "loss": loss}


def attention_forward(q, k, v, scale, mask=None, bias=None, keep=None, p=0.0):
    """Causal scaled dot-product attention per head; q, k, v (B, H, T, Dh).

    S = scale q k^T + bias; query i attends to key j when j <= i and mask[.., i, j] (True = attend);
    P = softmax of S over those keys (row max subtracted first), 0 on a row with none (torch's choice);
    A = P keep / (1 - p) (a given dropout keep-mask); out = A v."""
    t = q.shape[2]
    s = scale * (q @ k.transpose(0, 1, 3, 2))
    if bias is not None:
        s = s + bias
    allowed = np.tril(np.ones((t, t), dtype=bool)) & (True if mask is None else np.asarray(mask, dtype=bool))
    allowed = np.broadcast_to(allowed, s.shape)
    any_key = allowed.any(axis=-1, keepdims=True)
    top = np.where(any_key, np.where(allowed, s, -np.inf).max(axis=-1, keepdims=True), 0).astype(s.dtype)
    e = np.where(allowed, np.exp(np.where(allowed, s - top, 0)), 0).astype(s.dtype)
    total = e.sum(axis=-1, keepdims=True)
    probs = np.where(any_key, e / np.where(any_key, total, 1), 0).astype(s.dtype)
    a = probs if keep is None else (probs * keep / (1 - p)).astype(s.dtype)
    return a @ v, (q, k, v, probs, a, keep, p, scale)


def attention_backward(dout, cache):
    """dv = A^T dout; dA = dout v^T; dP = dA keep / (1 - p); dS = P (dP - rowsum(dP P));
    dq = scale dS k, dk = scale dS^T q."""
    q, k, v, probs, a, keep, p, scale = cache
    dv = a.transpose(0, 1, 3, 2) @ dout
    dp = dout @ v.transpose(0, 1, 3, 2)
    if keep is not None:
        dp = (dp * keep / (1 - p)).astype(dout.dtype)
    ds = probs * (dp - (dp * probs).sum(axis=-1, keepdims=True))
    return scale * (ds @ k), scale * (ds.transpose(0, 1, 3, 2) @ q), dv


def transformer_block(values, constants, hyper, dout, attention=(attention_forward, attention_backward)):
    """x (B T, C) tokens -> ln1 -> q, k, v (split into H heads) -> attn (causal) -> merge -> proj -> res1 =
    x + proj -> ln2 -> fc1 -> gelu -> fc2 -> res2 = res1 + fc2; the output is res2 and ``dout`` its
    cotangent (B T, C). x and res1 are each read twice: their gradients are sums. ``attention``: the
    (forward, backward) pair to use (another implementation's, to check it inside the block)."""
    v = values
    b, h, t, _ = constants["keep"].shape
    c = v["x"].shape[1]
    ln1, cl1 = layernorm_forward(v["x"], v["g1"], v["b1"], hyper["ln1"])
    out, heads, caches = {"ln1": ln1}, {}, {}
    for name in ("q", "k", "v"):
        out[name], caches[name] = affine_forward(ln1, v[f"W{name}"], v[f"b{name}"])
        out[f"{name}_split"] = out[name].reshape(b, t, h, c // h)
        heads[name] = out[f"{name}_heads"] = out[f"{name}_split"].transpose(0, 2, 1, 3)
    out["attn"], ca = attention[0](heads["q"], heads["k"], heads["v"], hyper["attn"]["scale"], constants["mask"],
                                   constants["bias"], constants["keep"], hyper["attn"]["dropout_p"])
    out["merge_t"] = out["attn"].transpose(0, 2, 1, 3)
    out["merge"] = out["merge_t"].reshape(b * t, c)
    out["proj"], cp = affine_forward(out["merge"], v["Wo"], v["bo"])
    out["res1"] = v["x"] + out["proj"]
    out["ln2"], cl2 = layernorm_forward(out["res1"], v["g2"], v["b2"], hyper["ln2"])
    out["fc1"], c1 = affine_forward(out["ln2"], v["W1"], v["c1"])
    out["gelu"] = gelu(out["fc1"]).astype(out["fc1"].dtype)
    out["fc2"], c2 = affine_forward(out["gelu"], v["W2"], v["c2"])
    out["res2"] = out["res1"] + out["fc2"]
    g, d = {}, {"res2": dout}
    d["res1"] = d["fc2"] = dout                                       # res2 = res1 + fc2
    d["gelu"], g["W2"], g["c2"] = affine_backward(d["fc2"], c2)
    d["fc1"] = (d["gelu"] * d_gelu(out["fc1"])).astype(dout.dtype)
    d["ln2"], g["W1"], g["c1"] = affine_backward(d["fc1"], c1)
    dres1_norm, g["g2"], g["b2"] = layernorm_backward(d["ln2"], cl2)
    d["res1"] = d["res1"] + dres1_norm                              # res1 read by ln2 and res2
    d["proj"] = d["res1"]
    d["merge"], g["Wo"], g["bo"] = affine_backward(d["proj"], cp)
    d["merge_t"] = d["merge"].reshape(b, t, h, c // h)
    d["attn"] = d["merge_t"].transpose(0, 2, 1, 3)
    dq, dk, dv = attention[1](d["attn"], ca)
    d["ln1"] = np.zeros_like(ln1)
    for name, dheads in (("q", dq), ("k", dk), ("v", dv)):
        d[f"{name}_heads"] = dheads
        d[f"{name}_split"] = dheads.transpose(0, 2, 1, 3)
        d[name] = d[f"{name}_split"].reshape(b * t, c)
        dln1, g[f"W{name}"], g[f"b{name}"] = affine_backward(d[name], caches[name])
        d["ln1"] = d["ln1"] + dln1                                  # ln1 read by q, k and v
    g["x"], g["g1"], g["b1"] = layernorm_backward(d["ln1"], cl1)
    g["x"] = g["x"] + d["res1"]                                     # x read by ln1 and res1
    return out["res2"], g, d, out


def lstm_lm(values, constants, hyper, dout, lstm=(lstm_forward, lstm_backward)):
    """ids (N, T) -> embed = W_embed[ids] -> lstm from h0 -> steps = (N T, H) -> scores -> softmax loss
    against y (N T,). ``lstm``: the (forward, backward) pair to use (CS231n's signatures)."""
    v = values
    embed, ce = word_embedding_forward(constants["ids"], v["W_embed"])
    h, cl = lstm[0](embed, v["h0"], v["Wx"], v["Wh"], v["b"])
    n, t, hidden = h.shape
    steps = h.reshape(n * t, hidden)
    scores, cs = affine_forward(steps, v["W_out"], v["b_out"])
    loss, dscores = _loss(scores, constants["y"], dout)
    g, d = {}, {"loss": np.asarray(dout), "scores": dscores}
    d["steps"], g["W_out"], g["b_out"] = affine_backward(dscores, cs)
    d["lstm"] = d["steps"].reshape(n, t, hidden)
    d["embed"], g["h0"], g["Wx"], g["Wh"], g["b"] = lstm[1](d["lstm"], cl)
    g["W_embed"] = word_embedding_backward(d["embed"], ce)
    outputs = {"embed": embed, "lstm": h, "steps": steps, "scores": scores, "loss": loss}
    return loss, g, d, outputs
