"""CS231n-style layers, vectorised -- a correct implementation to copy.

A second, independently written, correct implementation of the layer contract
in docs/layers_contract.md (``forward(...) -> (out, cache)``,
``backward(dout, cache) -> gradients``, CS231n's names and argument orders).
Plain NumPy, written differently from a loop-by-loop version on purpose:

* normalisations use the closed-form backward,
  dx = (1/n)·inv_std·(n·dxhat − Σdxhat − xhat·Σ(dxhat·xhat));
* conv2d is im2col + one matrix product (backward: col2im with np.add.at);
* pooling works on strided window views (sliding_window_view); max-pool sends
  each window's gradient to exactly one maximum, the first in row-major order;
* the embedding gradient is onehot(x)ᵀ @ dout;
* cross-entropy is written with the log-sum-exp.
* the RNN and LSTM multiply [x, h] by one stacked weight matrix or compute the i, f, o
  gates in one sigmoid call; their sequence backward carries only the recurrent gradient
  through the time loop and forms dx, dWx, dWh, db from every step at once (einsum).

Outputs and gradients keep the input's dtype; no input is changed in place.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


# affine ---------------------------------------------------------------------------

def affine_forward(x, w, b):
    return np.dot(x.reshape(len(x), -1), w) + b, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return np.dot(dout, w.T).reshape(x.shape), np.dot(x.reshape(len(x), -1).T, dout), dout.sum(0)


# normalisations: xhat = (x − mean) · inv_std over `axes`, closed-form backward ----------

def _norm(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + x.dtype.type(eps))
    return (x - mean) * inv_std, inv_std


def _norm_grad(dxhat, xhat, inv_std, axes):
    n = math.prod(xhat.shape[a] for a in axes)
    sum_d = dxhat.sum(axis=axes, keepdims=True)
    sum_dx = (dxhat * xhat).sum(axis=axes, keepdims=True)
    return (inv_std / n) * (n * dxhat - sum_d - xhat * sum_dx)


def batchnorm_forward(x, gamma, beta, bn_param):
    if bn_param.get("mode", "train") != "train":
        raise ValueError("only mode 'train' is implemented")
    xhat, inv_std = _norm(x, (0,), bn_param.get("eps", 1e-5))
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def batchnorm_backward(dout, cache):
    xhat, inv_std, gamma = cache
    dx = _norm_grad(dout * gamma, xhat, inv_std, (0,))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    if bn_param.get("mode", "train") != "train":
        raise ValueError("only mode 'train' is implemented")
    g, b = gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
    xhat, inv_std = _norm(x, (0, 2, 3), bn_param.get("eps", 1e-5))
    return g * xhat + b, (xhat, inv_std, g)


def spatial_batchnorm_backward(dout, cache):
    xhat, inv_std, g = cache
    dx = _norm_grad(dout * g, xhat, inv_std, (0, 2, 3))
    return dx, (dout * xhat).sum((0, 2, 3)), dout.sum((0, 2, 3))


def layernorm_forward(x, gamma, beta, ln_param):
    xhat, inv_std = _norm(x, (1,), ln_param.get("eps", 1e-5))
    return gamma * xhat + beta, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache):
    xhat, inv_std, gamma = cache
    dx = _norm_grad(dout * gamma, xhat, inv_std, (1,))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def rmsnorm_forward(x, gamma, rms_param):
    inv_rms = 1 / np.sqrt((x * x).mean(axis=1, keepdims=True) + x.dtype.type(rms_param.get("eps", 1e-6)))
    xhat = x * inv_rms
    return xhat * gamma, (xhat, inv_rms, gamma)


def rmsnorm_backward(dout, cache):
    # dx = inv_rms · (dxhat − xhat · mean(dxhat · xhat))
    xhat, inv_rms, gamma = cache
    dxhat = dout * gamma
    dx = inv_rms * (dxhat - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    return dx, (dout * xhat).sum(0)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    N, C, H, W = x.shape
    xhat, inv_std = _norm(x.reshape(N, G, C // G, H, W), (2, 3, 4), gn_param.get("eps", 1e-5))
    xhat = xhat.reshape(x.shape)
    return gamma * xhat + beta, (xhat, inv_std, gamma, G)


def spatial_groupnorm_backward(dout, cache):
    xhat, inv_std, gamma, G = cache
    N, C, H, W = dout.shape
    grouped = (N, G, C // G, H, W)
    dx = _norm_grad((dout * gamma).reshape(grouped), xhat.reshape(grouped), inv_std, (2, 3, 4))
    dgamma = (dout * xhat).sum((0, 2, 3), keepdims=True)
    return dx.reshape(dout.shape), dgamma, dout.sum((0, 2, 3), keepdims=True)


# dropout (p = keep probability) -----------------------------------------------------

def dropout_forward(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param.get("mode", "train")
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    if mode == "test":
        return x.copy(), None
    mask = ((np.random.rand(*x.shape) < p) / p).astype(x.dtype)
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout.copy() if cache is None else dout * cache


# conv2d: im2col + matmul -------------------------------------------------------------

def _conv_index(x_shape, w_shape, conv_param):
    """Row and column indices into the padded input: (HH, 1, Hout, 1) and (1, WW, 1, Wout)."""
    (sh, sw), (ph, pw) = _pair(conv_param.get("stride", 1)), _pair(conv_param.get("pad", 0))
    dh, dw = _pair(conv_param.get("dilation", 1))
    H, W = x_shape[2:]
    HH, WW = w_shape[2:]
    Hout = (H + 2 * ph - dh * (HH - 1) - 1) // sh + 1
    Wout = (W + 2 * pw - dw * (WW - 1) - 1) // sw + 1
    rows = (dh * np.arange(HH))[:, None] + sh * np.arange(Hout)[None, :]
    cols = (dw * np.arange(WW))[:, None] + sw * np.arange(Wout)[None, :]
    return rows[:, None, :, None], cols[None, :, None, :], (ph, pw)


def conv_forward_naive(x, w, b, conv_param):
    N, C = x.shape[:2]
    F = w.shape[0]
    rows, cols, (ph, pw) = _conv_index(x.shape, w.shape, conv_param)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    patches = xp[:, :, rows, cols]                                  # (N, C, HH, WW, Hout, Wout)
    Hout, Wout = patches.shape[-2:]
    col = patches.transpose(0, 4, 5, 1, 2, 3).reshape(N * Hout * Wout, -1)
    out = col @ w.reshape(F, -1).T + b                              # (N·Hout·Wout, F)
    out = out.reshape(N, Hout, Wout, F).transpose(0, 3, 1, 2)
    return out, (x.shape, xp.shape, w, col, rows, cols, (ph, pw))


def conv_backward_naive(dout, cache):
    x_shape, xp_shape, w, col, rows, cols, (ph, pw) = cache
    N, C, H, W = x_shape
    F, _, HH, WW = w.shape
    Hout, Wout = dout.shape[2:]
    d = dout.transpose(0, 2, 3, 1).reshape(-1, F)                   # (N·Hout·Wout, F)
    dw = (d.T @ col).reshape(w.shape)
    db = d.sum(0)
    dcol = (d @ w.reshape(F, -1)).reshape(N, Hout, Wout, C, HH, WW).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros(xp_shape, dtype=dcol.dtype)
    np.add.at(dxp, (slice(None), slice(None), rows, cols), dcol)    # col2im
    return dxp[:, :, ph:ph + H, pw:pw + W], dw, db


# pooling on window views --------------------------------------------------------------

def _windows(x, ph, pw, s):
    """(N, C, Hout, Wout, ph, pw) strided view of x's pooling windows."""
    return sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::s, ::s]


def max_pool_forward_naive(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    win = _windows(x, ph, pw, s)
    first = win.reshape(*win.shape[:4], -1).argmax(-1)              # first max, row-major
    out = win.max(axis=(-2, -1))
    return out, (x.shape, x.dtype, first, pool_param)


def max_pool_backward_naive(dout, cache):
    (N, C, H, W), dtype, first, pool_param = cache
    pw, s = pool_param["pool_width"], pool_param["stride"]
    Hout, Wout = first.shape[2:]
    r = s * np.arange(Hout)[:, None] + first // pw                  # (N, C, Hout, Wout)
    c = s * np.arange(Wout)[None, :] + first % pw
    n, ch = np.arange(N)[:, None, None, None], np.arange(C)[None, :, None, None]
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    np.add.at(dx, (n, ch, r, c), dout)
    return dx


def _avg_setup(shape, dtype, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    if pool_param.get("count_include_pad", True):
        return ph, pw, s, pad, ph * pw
    real = np.pad(np.ones(shape[2:], dtype=dtype), pad)
    return ph, pw, s, pad, _windows(real[None, None], ph, pw, s).sum((-2, -1))


def avg_pool_forward(x, pool_param):
    ph, pw, s, pad, divisor = _avg_setup(x.shape, x.dtype, pool_param)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = _windows(xp, ph, pw, s).sum((-2, -1)) / divisor
    return out, (x.shape, pool_param)


def avg_pool_backward(dout, cache):
    (N, C, H, W), pool_param = cache
    ph, pw, s, pad, divisor = _avg_setup((N, C, H, W), dout.dtype, pool_param)
    share = dout / divisor
    Hout, Wout = dout.shape[2:]
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    for a in range(ph):                                             # one kernel offset at a time
        for b in range(pw):
            dxp[:, :, a:a + s * (Hout - 1) + 1:s, b:b + s * (Wout - 1) + 1:s] += share
    return dxp[:, :, pad:pad + H, pad:pad + W]


# embedding ---------------------------------------------------------------------------

def word_embedding_forward(x, W):
    return W[x], (x, W.shape[0])


def word_embedding_backward(dout, cache):
    x, V = cache
    onehot = (x.reshape(-1, 1) == np.arange(V)).astype(dout.dtype)  # (N·T, V)
    return onehot.T @ dout.reshape(-1, dout.shape[-1])


# cross-entropy via log-sum-exp ---------------------------------------------------------

def cross_entropy_forward(x, y, ce_param):
    eps = float(ce_param.get("label_smoothing", 0.0))
    reduction = ce_param.get("reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    C = x.shape[1]
    keep = y != ce_param.get("ignore_index", -100)
    q = (1 - eps) * (np.where(keep, y, 0)[:, None] == np.arange(C)) + eps / C
    q = q.astype(x.dtype)
    m = x.max(1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(1, keepdims=True))               # log Σ exp(x − m)
    # −Σ q·log softmax = lse − Σ q·(x − m), since Σ q = 1
    loss = np.where(keep, (lse - ((x - m) * q).sum(1, keepdims=True))[:, 0], 0)
    n_kept = int(keep.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"none": loss, "sum": loss.sum(), "mean": loss.sum() / n_kept}[reduction]
    return out, (np.exp(x - m - lse), q, keep, n_kept, reduction)


def cross_entropy_backward(dout, cache):
    softmax, q, keep, n_kept, reduction = cache
    dout = np.asarray(dout, dtype=softmax.dtype)
    if reduction == "none":
        scale = np.where(keep, dout, 0)
    else:
        per_row = dout / n_kept if reduction == "mean" and n_kept else dout
        scale = np.where(keep, per_row, 0).astype(softmax.dtype)
    return (softmax - q) * scale[:, None]


def softmax_loss(x, y):
    N = len(x)
    z = x - x.max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1))                                  # log-sum-exp of the shifted row
    loss = (lse - z[np.arange(N), y]).sum() / N
    dx = np.exp(z - lse[:, None])
    dx[np.arange(N), y] -= 1
    return loss, dx / N


# recurrent: vanilla RNN and LSTM (CS231n's rnn_layers.py signatures) ------------------------
# One stacked weight matrix [Wx; Wh] multiplies [x, h]; the sequence backward carries only the
# recurrent gradient through its time loop and forms dx, dWx, dWh, db afterwards from all the steps'
# pre-activation gradients at once (einsum over N and T).

def _sig(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1, e) / (1 + e)


def _cell_input(x, h, Wx, Wh):
    return np.concatenate([x, h], axis=1), np.concatenate([Wx, Wh], axis=0)


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    xh, W = _cell_input(x, prev_h, Wx, Wh)
    next_h = np.tanh(xh @ W + b)
    return next_h, (xh, W, next_h, x.shape[1])


def rnn_step_backward(dnext_h, cache):
    xh, W, next_h, D = cache
    da = dnext_h - dnext_h * next_h * next_h
    dxh, dW = da @ W.T, xh.T @ da
    return dxh[:, :D], dxh[:, D:], dW[:D], dW[D:], da.sum(0)


def rnn_forward(x, h0, Wx, Wh, b):
    hs, h = [], h0
    for xt in np.moveaxis(x, 1, 0):
        h = np.tanh(xt @ Wx + h @ Wh + b)
        hs.append(h)
    h = np.stack(hs, axis=1)
    return h, (x, h0, Wx, Wh, h)


def rnn_backward(dh, cache):
    x, h0, Wx, Wh, h = cache
    T = x.shape[1]
    da = np.empty_like(h)                                     # (N, T, H): every step's pre-activation grad
    carry = np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        da[:, t] = (dh[:, t] + carry) * (1 - h[:, t] ** 2)
        carry = da[:, t] @ Wh.T
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    return (da @ Wx.T, carry, np.einsum("ntd,ntk->dk", x, da), np.einsum("ntj,ntk->jk", h_prev, da),
            da.sum((0, 1)))


def _lstm_gates(x, h, Wx, Wh, b):
    H = h.shape[1]
    a = x @ Wx + h @ Wh + b
    ifo = _sig(a[:, :3 * H])                                  # i, f, o in one call
    return ifo, np.tanh(a[:, 3 * H:])


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    ifo, g = _lstm_gates(x, prev_h, Wx, Wh, b)
    i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
    next_c = i * g + f * prev_c
    tc = np.tanh(next_c)
    return o * tc, next_c, (x, prev_h, prev_c, Wx, Wh, ifo, g, tc)


def _lstm_da(dh, dc_next, prev_c, ifo, g, tc):
    """(da (N, 4H), dprev_c) of one step: dc = dc_next + dh·o·(1 − tc²)."""
    H = g.shape[1]
    i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
    dc = dc_next + dh * o * (1 - tc * tc)
    difo = np.concatenate([dc * g, dc * prev_c, dh * tc], axis=1) * ifo * (1 - ifo)
    return np.concatenate([difo, dc * i * (1 - g * g)], axis=1), dc * f


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, ifo, g, tc = cache
    da, dprev_c = _lstm_da(dnext_h, dnext_c, prev_c, ifo, g, tc)
    return da @ Wx.T, da @ Wh.T, dprev_c, x.T @ da, prev_h.T @ da, da.sum(0)


def lstm_forward(x, h0, Wx, Wh, b):
    h, c = h0, np.zeros_like(h0)
    hs, cs, gates = [], [], []
    for xt in np.moveaxis(x, 1, 0):
        cs.append(c)                                          # the step's prev_c
        ifo, g = _lstm_gates(xt, h, Wx, Wh, b)
        H = h0.shape[1]
        c = ifo[:, :H] * g + ifo[:, H:2 * H] * c
        h = ifo[:, 2 * H:] * np.tanh(c)
        hs.append(h)
        gates.append((ifo, g, np.tanh(c)))
    h = np.stack(hs, axis=1)
    return h, (x, h0, Wx, Wh, h, cs, gates)


def lstm_backward(dh, cache):
    x, h0, Wx, Wh, h, cs, gates = cache
    N, T, H = dh.shape
    da = np.empty((N, T, 4 * H), dtype=dh.dtype)
    carry_h, carry_c = np.zeros_like(h0), np.zeros_like(h0)
    for t in range(T - 1, -1, -1):
        da[:, t], carry_c = _lstm_da(dh[:, t] + carry_h, carry_c, cs[t], *gates[t])
        carry_h = da[:, t] @ Wh.T
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
    return (da @ Wx.T, carry_h, np.einsum("ntd,ntk->dk", x, da), np.einsum("ntj,ntk->jk", h_prev, da),
            da.sum((0, 1)))
