"""The five networks ``bpcheck graph`` checks, a second time in plain NumPy -- correct, and written differently.

What it is: an independent implementation of the architectures of ``bpcheck.ops.architectures``
(residual_mlp, cnn, tied_embedding, transformer_block, lstm_lm) with bpcheck's graph contract,

    net(values, constants, hyper, dout) -> (out, grads, deltas, outputs)

``values`` the inputs and parameters by leaf name, ``constants`` the labels, ids and masks, ``hyper``
each node's hyper-parameters by node name, ``dout`` the cotangent of the output. ``grads`` holds
dC/d(leaf) for every leaf; ``deltas`` dC/d(node output) and ``outputs`` the forward value of *every*
node, under the graph's node names, so bpcheck judges each node on its own at these values as well
as the whole network. It imports neither ``reference`` nor ``bpcheck``: only NumPy and ``math``.

How it differs from ``reference/networks.py`` (which composes CS231n-style layer pairs with caches):

- layer norm and spatial batch norm backward in their one-line closed form
  dx = inv / m (m dxhat - sum(dxhat) - xhat sum(dxhat xhat)), m the number of values normalised;
- the convolution is im2col: a loop over the KH x KW kernel offsets gathers strided slices of the
  padded input into a patch matrix, so forward and dW are one matrix product each, and the backward
  adds each offset's slice of dcols back (col2im); stride, padding and dilation come from ``hyper``;
- max-pool forward and backward are vectorised: the windows are stacked on a last axis, the first
  maximum in row-major order of each window is found with one argmax, and the backward is a one-hot
  mask times dout, added back offset by offset (overlapping windows accumulate);
- the three projections q, k, v of the transformer are one matrix product with [Wq | Wk | Wv]
  (and their input gradient one product with its transpose); attention honours the graph's mask,
  additive bias and keep-mask constants and its backward takes delta = rowsum(dO * O)
  (FlashAttention-2) rather than rowsum(dP * P);
- the LSTM keeps its gates stacked: the input projection x Wx + b of all time steps is one product
  before the loop, one sigmoid covers the i, f, o blocks (CS231n's order i, f, o, g), and the
  backward stores every step's gate gradient in one (N, T, 4H) array, so dx, dWx, dWh and db are each
  one product (or sum) after the loop;
- the embedding gradient is a one-hot matrix product (onehot(ids)^T dout), repeated ids summing in it;
- gradients of tensors read twice (the residual sums, the tied W, ln1 read by q, k, v) are summed.

Precision: everything runs in the inputs' dtype. Constants are Python numbers, which NumPy 2 never
promotes a float32 array with, and ``dout`` is cast to the dtype. The one exception is erfc in the
exact GELU (NumPy has no erf): it is evaluated per entry by ``math.erfc`` in double and rounded once
to the dtype, as a correctly rounded math library would.

Check it:

    bpcheck graph transformer_block --fn examples/numpy_networks.py:transformer_block

(and likewise residual_mlp, cnn, tied_embedding, lstm_lm), or ``tests/test_graph_examples.py``.
"""
import math

import numpy as np

__all__ = ["residual_mlp", "cnn", "tied_embedding", "transformer_block", "lstm_lm"]

_erfc = np.vectorize(math.erfc, otypes=[np.float64])
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


# --- element-wise pieces ------------------------------------------------------------------------------

def _cotangent(dout, like):
    return np.asarray(dout, dtype=like.dtype)


def _sigmoid(z):
    e = np.exp(-np.abs(z))                             # never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _gelu_parts(z):
    """(gelu(z), gelu'(z)) of the exact GELU z Phi(z); Phi(z) = erfc(-z / sqrt 2) / 2 does not cancel
    for negative z as (1 + erf) would."""
    phi_cdf = (0.5 * _erfc(-np.asarray(z, dtype=np.float64) / math.sqrt(2))).astype(z.dtype)
    density = np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return z * phi_cdf, phi_cdf + z * density


# --- dense layers and the loss ------------------------------------------------------------------------

def _linear(x, w, b):
    """The affine op: x flattened to (N, D), times w (D, M), plus b."""
    return x.reshape(x.shape[0], -1) @ w + b


def _linear_grads(delta, x, w):
    """(dx, dw, db) of _linear."""
    x2 = x.reshape(x.shape[0], -1)
    return (delta @ w.T).reshape(x.shape), x2.T @ delta, delta.sum(axis=0)


def _xent(scores, y, dout):
    """CS231n's softmax_loss (mean over N) with its cotangent folded in: (loss, dC/dscores)."""
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(n), y].sum() / n
    target = np.zeros_like(scores)
    target[np.arange(n), y] = 1
    return np.asarray(loss, dtype=scores.dtype), (np.exp(logp) - target) * (dout / n)


def _gather_rows(W, ids):
    return W[ids]


def _scatter_rows(delta, ids, vocab):
    """dW of an embedding lookup: onehot(ids)^T delta (a row looked up twice gets both rows' sum)."""
    onehot = (ids.reshape(-1, 1) == np.arange(vocab)).astype(delta.dtype)
    return onehot.T @ delta.reshape(ids.size, -1)


# --- normalisation, one core for layer norm and spatial batch norm ----------------------------------

def _normalise(x, axes, eps):
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    inv = 1 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    return xc * inv, inv


def _normalise_backward(dxhat, xhat, inv, axes):
    """The closed form dx = inv / m (m dxhat - sum(dxhat) - xhat sum(dxhat xhat)) over the axes."""
    m = math.prod(xhat.shape[a] for a in axes)
    return (inv / m) * (m * dxhat - dxhat.sum(axis=axes, keepdims=True)
                        - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True))


def _layernorm(x, gamma, beta, eps):
    xhat, inv = _normalise(x, (-1,), eps)
    return gamma * xhat + beta, (xhat, inv, gamma)


def _layernorm_backward(delta, cache):
    xhat, inv, gamma = cache
    return (_normalise_backward(delta * gamma, xhat, inv, (-1,)), (delta * xhat).sum(axis=0),
            delta.sum(axis=0))


def _spatial_batchnorm(x, gamma, beta, eps):
    g, b = gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
    xhat, inv = _normalise(x, (0, 2, 3), eps)
    return g * xhat + b, (xhat, inv, g)


def _spatial_batchnorm_backward(delta, cache):
    xhat, inv, g = cache
    return (_normalise_backward(delta * g, xhat, inv, (0, 2, 3)), (delta * xhat).sum(axis=(0, 2, 3)),
            delta.sum(axis=(0, 2, 3)))


# --- convolution (im2col) and max-pool ----------------------------------------------------------------

def _offsets(kh, kw, oh, ow, stride, dilation):
    """For each kernel offset (k, l): its slices of the (padded) plane, the rows and columns it reads."""
    (sh, sw), (dh, dw) = stride, dilation
    for k in range(kh):
        for l in range(kw):
            yield k, l, (slice(k * dh, k * dh + sh * (oh - 1) + 1, sh), slice(l * dw, l * dw + sw * (ow - 1) + 1, sw))


def _conv(x, w, b, h):
    stride, pad, dilation = h.get("stride", [1, 1]), h.get("pad", [0, 0]), h.get("dilation", [1, 1])
    n, c, hh, ww = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (hh + 2 * pad[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (ww + 2 * pad[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    patches = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for k, l, (rows, cols) in _offsets(kh, kw, oh, ow, stride, dilation):
        patches[..., k, l] = xp[:, :, rows, cols].transpose(0, 2, 3, 1)
    cols2 = patches.reshape(n * oh * ow, c * kh * kw)
    out = (cols2 @ w.reshape(f, -1).T + b).reshape(n, oh, ow, f).transpose(0, 3, 1, 2)
    return out, (x.shape, xp.shape, cols2, w, (oh, ow), stride, pad, dilation)


def _conv_backward(delta, cache):
    xshape, xpshape, cols2, w, (oh, ow), stride, pad, dilation = cache
    n, c, hh, ww = xshape
    f, _, kh, kw = w.shape
    d = delta.transpose(0, 2, 3, 1).reshape(n * oh * ow, f)
    dw = (d.T @ cols2).reshape(w.shape)
    dpatches = (d @ w.reshape(f, -1)).reshape(n, oh, ow, c, kh, kw)
    dxp = np.zeros(xpshape, dtype=delta.dtype)
    for k, l, (rows, cols) in _offsets(kh, kw, oh, ow, stride, dilation):       # col2im
        dxp[:, :, rows, cols] += dpatches[..., k, l].transpose(0, 3, 1, 2)
    return dxp[:, :, pad[0]:pad[0] + hh, pad[1]:pad[1] + ww], dw, d.sum(axis=0)


def _maxpool(x, h):
    ph, pw, s = h["pool_height"], h["pool_width"], h["stride"]
    n, c, hh, ww = x.shape
    oh, ow = (hh - ph) // s + 1, (ww - pw) // s + 1
    offsets = list(_offsets(ph, pw, oh, ow, (s, s), (1, 1)))
    windows = np.stack([x[:, :, rows, cols] for _, _, (rows, cols) in offsets], axis=-1)
    first = windows.argmax(axis=-1)                     # the first maximum, row-major in its window
    out = np.take_along_axis(windows, first[..., None], axis=-1)[..., 0]
    return out, (x.shape, offsets, first)


def _maxpool_backward(delta, cache):
    shape, offsets, first = cache
    routed = (first[..., None] == np.arange(len(offsets))) * delta[..., None]
    dx = np.zeros(shape, dtype=delta.dtype)
    for j, (_, _, (rows, cols)) in enumerate(offsets):
        dx[:, :, rows, cols] += routed[..., j]
    return dx


# --- attention -------------------------------------------------------------------------------------

def _attention(q, k, v, mask, bias, keep, h):
    """S = scale q k^T + bias over the allowed keys (mask, and j <= i when causal), P its softmax
    (0 on a row with no allowed key), A = P keep / (1 - p), out = A v."""
    tq, tk = q.shape[2], k.shape[2]
    allowed = np.asarray(mask, dtype=bool)
    if h.get("causal", False):
        allowed = allowed & (np.arange(tk)[None, :] <= np.arange(tq)[:, None])
    s = h["scale"] * (q @ np.swapaxes(k, -1, -2)) + bias
    s = np.where(allowed, s, -np.inf)
    top = s.max(axis=-1, keepdims=True)
    e = np.where(allowed, np.exp(s - np.where(np.isfinite(top), top, 0)), 0)
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(total > 0, total, 1)
    a = p * keep / (1 - h.get("dropout_p", 0.0))
    out = a @ v
    return out, (q, k, v, p, a, keep, out, h)


def _attention_backward(dout, cache):
    """dv = A^T dO, dP = (dO v^T) keep / (1 - p), dS = P (dP - rowsum(dO * O)), dq = scale dS k,
    dk = scale dS^T q."""
    q, k, v, p, a, keep, out, h = cache
    dv = np.swapaxes(a, -1, -2) @ dout
    dp = (dout @ np.swapaxes(v, -1, -2)) * keep / (1 - h.get("dropout_p", 0.0))
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    return h["scale"] * (ds @ k), h["scale"] * (np.swapaxes(ds, -1, -2) @ q), dv


# --- the networks ------------------------------------------------------------------------------------

def residual_mlp(values, constants, hyper, dout):
    """x -> fc1 -> relu -> fc2 -> skip = fc2 + x -> norm -> fc3 -> loss (softmax_loss against y)."""
    v, o, d, g = values, {}, {}, {}
    x = v["x"]
    o["fc1"] = _linear(x, v["w1"], v["b1"])
    o["relu"] = np.maximum(o["fc1"], 0)
    o["fc2"] = _linear(o["relu"], v["w2"], v["b2"])
    o["skip"] = o["fc2"] + x
    o["norm"], norm_cache = _layernorm(o["skip"], v["gamma"], v["beta"], hyper["norm"]["eps"])
    o["fc3"] = _linear(o["norm"], v["w3"], v["b3"])
    d["loss"] = _cotangent(dout, x)
    o["loss"], d["fc3"] = _xent(o["fc3"], constants["y"], d["loss"])

    d["norm"], g["w3"], g["b3"] = _linear_grads(d["fc3"], o["norm"], v["w3"])
    d["skip"], g["gamma"], g["beta"] = _layernorm_backward(d["norm"], norm_cache)
    d["fc2"] = d["skip"]
    d["relu"], g["w2"], g["b2"] = _linear_grads(d["fc2"], o["relu"], v["w2"])
    d["fc1"] = d["relu"] * (o["fc1"] > 0)
    dx_fc1, g["w1"], g["b1"] = _linear_grads(d["fc1"], x, v["w1"])
    g["x"] = dx_fc1 + d["skip"]                           # x feeds fc1 and skip
    return o["loss"], g, d, o


def cnn(values, constants, hyper, dout):
    """x -> conv -> bn (spatial batch norm, training) -> relu1 -> pool -> fc1 -> relu2 -> fc2 -> loss."""
    v, o, d, g = values, {}, {}, {}
    o["conv"], conv_cache = _conv(v["x"], v["W1"], v["b1"], hyper["conv"])
    o["bn"], bn_cache = _spatial_batchnorm(o["conv"], v["gamma"], v["beta"], hyper["bn"]["eps"])
    o["relu1"] = np.maximum(o["bn"], 0)
    o["pool"], pool_cache = _maxpool(o["relu1"], hyper["pool"])
    o["fc1"] = _linear(o["pool"], v["W2"], v["b2"])
    o["relu2"] = np.maximum(o["fc1"], 0)
    o["fc2"] = _linear(o["relu2"], v["W3"], v["b3"])
    d["loss"] = _cotangent(dout, v["x"])
    o["loss"], d["fc2"] = _xent(o["fc2"], constants["y"], d["loss"])

    d["relu2"], g["W3"], g["b3"] = _linear_grads(d["fc2"], o["relu2"], v["W3"])
    d["fc1"] = d["relu2"] * (o["fc1"] > 0)
    d["pool"], g["W2"], g["b2"] = _linear_grads(d["fc1"], o["pool"], v["W2"])
    d["relu1"] = _maxpool_backward(d["pool"], pool_cache)
    d["bn"] = d["relu1"] * (o["bn"] > 0)
    d["conv"], g["gamma"], g["beta"] = _spatial_batchnorm_backward(d["bn"], bn_cache)
    g["x"], g["W1"], g["b1"] = _conv_backward(d["conv"], conv_cache)
    return o["loss"], g, d, o


def tied_embedding(values, constants, hyper, dout):
    """embed = W[ids] -> WT = W^T -> logits = embed WT + b -> loss; W feeds embed and WT."""
    W, o, d, g = values["W"], {}, {}, {}
    ids = constants["ids"]
    o["embed"] = _gather_rows(W, ids)
    o["WT"] = W.T
    o["logits"] = _linear(o["embed"], o["WT"], values["b"])
    d["loss"] = _cotangent(dout, W)
    o["loss"], d["logits"] = _xent(o["logits"], constants["y"], d["loss"])

    d["embed"], d["WT"], g["b"] = _linear_grads(d["logits"], o["embed"], o["WT"])
    g["W"] = _scatter_rows(d["embed"], ids, W.shape[0]) + d["WT"].T
    return o["loss"], g, d, o


def transformer_block(values, constants, hyper, dout):
    """x (B T, C) -> ln1 -> q, k, v -> heads -> attn (causal) -> merge -> proj -> res1 = x + proj -> ln2
    -> fc1 -> gelu -> fc2 -> res2 = res1 + fc2, the output; ``dout`` is its (B T, C) cotangent."""
    v, o, d, g = values, {}, {}, {}
    x = v["x"]
    b, t, heads, dh = hyper["q_split"]["shape"]
    c = heads * dh
    o["ln1"], ln1_cache = _layernorm(x, v["g1"], v["b1"], hyper["ln1"]["eps"])
    w_qkv = np.concatenate([v["Wq"], v["Wk"], v["Wv"]], axis=1)
    qkv = _linear(o["ln1"], w_qkv, np.concatenate([v["bq"], v["bk"], v["bv"]]))
    for j, name in enumerate("qkv"):
        o[name] = qkv[:, j * c:(j + 1) * c]
        o[f"{name}_split"] = o[name].reshape(b, t, heads, dh)
        o[f"{name}_heads"] = o[f"{name}_split"].transpose(0, 2, 1, 3)
    o["attn"], attn_cache = _attention(o["q_heads"], o["k_heads"], o["v_heads"], constants["mask"],
                                       constants["bias"], constants["keep"], hyper["attn"])
    o["merge_t"] = o["attn"].transpose(0, 2, 1, 3)
    o["merge"] = o["merge_t"].reshape(b * t, c)
    o["proj"] = _linear(o["merge"], v["Wo"], v["bo"])
    o["res1"] = x + o["proj"]
    o["ln2"], ln2_cache = _layernorm(o["res1"], v["g2"], v["b2"], hyper["ln2"]["eps"])
    o["fc1"] = _linear(o["ln2"], v["W1"], v["c1"])
    o["gelu"], gelu_slope = _gelu_parts(o["fc1"])
    o["fc2"] = _linear(o["gelu"], v["W2"], v["c2"])
    o["res2"] = o["res1"] + o["fc2"]

    d["res2"] = _cotangent(dout, x)
    d["fc2"] = d["res2"]
    d["gelu"], g["W2"], g["c2"] = _linear_grads(d["fc2"], o["gelu"], v["W2"])
    d["fc1"] = d["gelu"] * gelu_slope
    d["ln2"], g["W1"], g["c1"] = _linear_grads(d["fc1"], o["ln2"], v["W1"])
    dres1_ln2, g["g2"], g["b2"] = _layernorm_backward(d["ln2"], ln2_cache)
    d["res1"] = d["res2"] + dres1_ln2                     # res1 feeds ln2 and res2
    d["proj"] = d["res1"]
    d["merge"], g["Wo"], g["bo"] = _linear_grads(d["proj"], o["merge"], v["Wo"])
    d["merge_t"] = d["merge"].reshape(b, t, heads, dh)
    d["attn"] = d["merge_t"].transpose(0, 2, 1, 3)
    d["q_heads"], d["k_heads"], d["v_heads"] = _attention_backward(d["attn"], attn_cache)
    for name in "qkv":
        d[f"{name}_split"] = d[f"{name}_heads"].transpose(0, 2, 1, 3)
        d[name] = d[f"{name}_split"].reshape(b * t, c)
    dqkv = np.concatenate([d["q"], d["k"], d["v"]], axis=1)
    d["ln1"], dw_qkv, db_qkv = _linear_grads(dqkv, o["ln1"], w_qkv)   # ln1 feeds q, k and v: one product sums them
    for j, name in enumerate("qkv"):
        g[f"W{name}"], g[f"b{name}"] = dw_qkv[:, j * c:(j + 1) * c], db_qkv[j * c:(j + 1) * c]
    dx_ln1, g["g1"], g["b1"] = _layernorm_backward(d["ln1"], ln1_cache)
    g["x"] = dx_ln1 + d["res1"]                           # x feeds ln1 and res1
    return o["res2"], g, d, o


def lstm_lm(values, constants, hyper, dout):
    """ids (N, T) -> embed -> lstm (from h0, c0 = 0; gates i, f, o, g) -> steps (N T, H) -> scores -> loss."""
    v, o, d, g = values, {}, {}, {}
    ids = constants["ids"]
    Wx, Wh = v["Wx"], v["Wh"]
    n, t = ids.shape
    hid = Wh.shape[0]
    o["embed"] = _gather_rows(v["W_embed"], ids)
    x_proj = o["embed"] @ Wx + v["b"]                    # (N, T, 4H): every step's x Wx + b at once
    h, c = v["h0"], np.zeros_like(v["h0"])
    hs, cells = [], []
    for step in range(t):
        a = x_proj[:, step] + h @ Wh
        ifo = _sigmoid(a[:, :3 * hid])
        gate_g = np.tanh(a[:, 3 * hid:])
        i, f, og = ifo[:, :hid], ifo[:, hid:2 * hid], ifo[:, 2 * hid:]
        c_prev, c = c, f * c + i * gate_g
        tanh_c = np.tanh(c)
        h = og * tanh_c
        cells.append((ifo, gate_g, c_prev, tanh_c))
        hs.append(h)
    o["lstm"] = np.stack(hs, axis=1)
    o["steps"] = o["lstm"].reshape(n * t, hid)
    o["scores"] = _linear(o["steps"], v["W_out"], v["b_out"])
    d["loss"] = _cotangent(dout, v["h0"])
    o["loss"], d["scores"] = _xent(o["scores"], constants["y"], d["loss"])

    d["steps"], g["W_out"], g["b_out"] = _linear_grads(d["scores"], o["steps"], v["W_out"])
    d["lstm"] = d["steps"].reshape(n, t, hid)
    da = np.empty((n, t, 4 * hid), dtype=x_proj.dtype)    # every step's gate gradient, stacked
    dh_next, dc_next = np.zeros_like(h), np.zeros_like(h)
    for step in reversed(range(t)):
        ifo, gate_g, c_prev, tanh_c = cells[step]
        i, f, og = ifo[:, :hid], ifo[:, hid:2 * hid], ifo[:, 2 * hid:]
        dh = d["lstm"][:, step] + dh_next
        dc = dc_next + dh * og * (1 - tanh_c * tanh_c)
        difo = np.concatenate([dc * gate_g, dc * c_prev, dh * tanh_c], axis=1)
        da[:, step, :3 * hid] = difo * ifo * (1 - ifo)
        da[:, step, 3 * hid:] = dc * i * (1 - gate_g * gate_g)
        dh_next, dc_next = da[:, step] @ Wh.T, dc * f
    prev_h = np.concatenate([v["h0"][:, None], o["lstm"][:, :-1]], axis=1)
    da2 = da.reshape(n * t, 4 * hid)
    d["embed"] = da @ Wx.T
    g["Wx"] = o["embed"].reshape(n * t, -1).T @ da2
    g["Wh"] = prev_h.reshape(n * t, hid).T @ da2
    g["b"] = da2.sum(axis=0)
    g["h0"] = dh_next
    g["W_embed"] = _scatter_rows(d["embed"], ids, v["W_embed"].shape[0])
    return o["loss"], g, d, o
