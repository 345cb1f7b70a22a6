"""Readable NumPy reference for the layer contract of docs/layers_contract.md.

What it is: one hand-written forward and backward function per layer of the
contract's table, in CS231n's style -- ``forward(...) -> (out, cache)`` and
``backward(dout, cache) -> gradients`` -- with the equation each line
implements written beside it. Plain NumPy; it imports neither torch, jax,
scipy nor bpcheck.

What it is not: fast. The normalisations' backward passes walk back through the
forward's intermediates one stage at a time (the computational-graph style)
rather than using the shorter closed form, and convolution and pooling loop
over output positions; the recurrent layers (RNN, LSTM) loop over time steps, the
sequence backward calling the step backward once per step. Batch normalisation implements only the "train" mode.

Everything is computed in the input's dtype: constants are Python numbers
(which NumPy never promotes a float32 array with) or cast to ``x.dtype``, so a
float32 input gives float32 outputs and gradients. No input is changed in place, but for CS231n's
running averages, which batchnorm_forward writes into bn_param as CS231n's does.
"""
import numpy as np


def _pair(v):
    """An int or an (h, w) pair -> (h, w)."""
    if np.ndim(v) == 0:
        return int(v), int(v)
    h, w = v
    return int(h), int(w)


# --------------------------------------------------------------------------- affine

def affine_forward(x, w, b):
    """out = x.reshape(N, D) @ w + b;  x (N, d1, ..., dk), w (D, M), b (M,) -> out (N, M)."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    """dx = dout @ wᵀ (reshaped to x), dw = x2ᵀ @ dout, db = Σ_n dout;  dout (N, M)."""
    x, w = cache
    x2 = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


# ------------------------------------------------------------------ normalisations

def _normalize_forward(x, axis, eps):
    """xhat = (x − μ) / sqrt(σ² + eps) along `axis`, biased σ², in named stages.

    Stages: μ = mean(x); xmu = x − μ; sq = xmu²; var = mean(sq);
    sqrtvar = sqrt(var + eps); ivar = 1 / sqrtvar; xhat = xmu · ivar.
    """
    n = x.shape[axis]
    mu = np.mean(x, axis=axis, keepdims=True)
    xmu = x - mu
    sq = xmu ** 2
    var = np.mean(sq, axis=axis, keepdims=True)
    sqrtvar = np.sqrt(var + x.dtype.type(eps))
    ivar = 1 / sqrtvar
    xhat = xmu * ivar
    return xhat, (xmu, sqrtvar, ivar, n, axis)


def _normalize_backward(dxhat, cache):
    """dL/dx from dL/dxhat, walking the stages of _normalize_forward backwards.

    Summed up, the stages give the closed form
    dx = (1/n)·ivar·(n·dxhat − Σdxhat − xhat·Σ(dxhat·xhat)).
    """
    xmu, sqrtvar, ivar, n, axis = cache
    # xhat = xmu · ivar
    divar = np.sum(dxhat * xmu, axis=axis, keepdims=True)
    dxmu1 = dxhat * ivar
    # ivar = 1 / sqrtvar
    dsqrtvar = -divar / sqrtvar ** 2
    # sqrtvar = sqrt(var + eps)
    dvar = 0.5 * dsqrtvar / sqrtvar
    # var = (1/n) Σ sq
    dsq = np.ones_like(xmu) * dvar / n
    # sq = xmu²
    dxmu2 = 2 * xmu * dsq
    # xmu = x − μ  (x's direct path, and through μ)
    dx1 = dxmu1 + dxmu2
    dmu = -np.sum(dx1, axis=axis, keepdims=True)
    # μ = (1/n) Σ x
    dx2 = np.ones_like(xmu) * dmu / n
    return dx1 + dx2


def batchnorm_forward(x, gamma, beta, bn_param):
    """out = gamma · (x − μ_B) / sqrt(σ²_B + eps) + beta over the batch;  x (N, D), gamma, beta (D,).

    Also keeps CS231n's running averages in ``bn_param`` (for inference):
    running_mean ← m · running_mean + (1 − m) · μ_B, running_var ← m · running_var + (1 − m) · σ²_B
    (the biased batch variance), m = bn_param["momentum"] (default 0.9), both starting at 0."""
    mode = bn_param.get("mode", "train")
    if mode != "train":
        raise ValueError(f"batchnorm_forward implements mode 'train' only, not {mode!r}")
    eps, m = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    xhat, norm_cache = _normalize_forward(x, 0, eps)
    out = gamma * xhat + beta
    mu, var = x.mean(axis=0), x.var(axis=0)
    bn_param["running_mean"] = m * bn_param.get("running_mean", np.zeros_like(mu)) + (1 - m) * mu
    bn_param["running_var"] = m * bn_param.get("running_var", np.zeros_like(var)) + (1 - m) * var
    return out, (xhat, gamma, norm_cache)


def batchnorm_backward(dout, cache):
    """dbeta = Σ_n dout, dgamma = Σ_n dout·xhat, dx by the staged graph;  dout (N, D)."""
    xhat, gamma, norm_cache = cache
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dx = _normalize_backward(dout * gamma, norm_cache)
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batchnorm per channel over (N, H, W);  x (N, C, H, W), gamma, beta (C,)."""
    N, C, H, W = x.shape
    x2 = x.transpose(0, 2, 3, 1).reshape(-1, C)              # (N·H·W, C)
    out2, cache = batchnorm_forward(x2, gamma, beta, bn_param)
    out = out2.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    """The batchnorm backward on dout viewed as (N·H·W, C);  dout (N, C, H, W)."""
    N, C, H, W = dout.shape
    dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dx2, dgamma, dbeta = batchnorm_backward(dout2, cache)
    dx = dx2.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """out = gamma · (x − μ_row) / sqrt(σ²_row + eps) + beta, each row normalised;
    x (N, D), gamma, beta (D,)."""
    xhat, norm_cache = _normalize_forward(x, 1, ln_param.get("eps", 1e-5))
    out = gamma * xhat + beta
    return out, (xhat, gamma, norm_cache)


def layernorm_backward(dout, cache):
    """dbeta = Σ_n dout, dgamma = Σ_n dout·xhat, dx by the staged graph over each row;  dout (N, D)."""
    xhat, gamma, norm_cache = cache
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * xhat, axis=0)
    dx = _normalize_backward(dout * gamma, norm_cache)
    return dx, dgamma, dbeta


def rmsnorm_forward(x, gamma, rms_param):
    """out = x / sqrt(mean(x², axis 1) + eps) · gamma;  x (N, D), gamma (D,).

    Stages: sq = x²; ms = mean(sq); rms = sqrt(ms + eps); irms = 1 / rms; xhat = x · irms.
    """
    D = x.shape[1]
    sq = x ** 2
    ms = np.mean(sq, axis=1, keepdims=True)
    rms = np.sqrt(ms + x.dtype.type(rms_param.get("eps", 1e-6)))
    irms = 1 / rms
    xhat = x * irms
    out = xhat * gamma
    return out, (x, xhat, rms, irms, gamma, D)


def rmsnorm_backward(dout, cache):
    """dgamma = Σ_n dout·xhat; dx by the staged graph;  dout (N, D).

    Summed up, the stages give dx = irms·(dxhat − xhat·mean(dxhat·xhat)), dxhat = dout·gamma.
    """
    x, xhat, rms, irms, gamma, D = cache
    dgamma = np.sum(dout * xhat, axis=0)
    dxhat = dout * gamma
    # xhat = x · irms
    dirms = np.sum(dxhat * x, axis=1, keepdims=True)
    dx1 = dxhat * irms
    # irms = 1 / rms;  rms = sqrt(ms + eps)
    drms = -dirms / rms ** 2
    dms = 0.5 * drms / rms
    # ms = (1/D) Σ sq;  sq = x²
    dsq = np.ones_like(x) * dms / D
    dx2 = 2 * x * dsq
    return dx1 + dx2, dgamma


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Normalise each sample over each group of C/G channels and all of H, W; out = gamma·xhat + beta.

    x (N, C, H, W), gamma, beta (1, C, 1, 1), G groups dividing C.
    """
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)                                # (N, G, C/G·H·W)
    xhat_g, norm_cache = _normalize_forward(xg, 2, gn_param.get("eps", 1e-5))
    xhat = xhat_g.reshape(x.shape)
    out = gamma * xhat + beta
    return out, (xhat, gamma, G, norm_cache)


def spatial_groupnorm_backward(dout, cache):
    """dbeta = Σ_{n,h,w} dout, dgamma = Σ_{n,h,w} dout·xhat (shape (1, C, 1, 1)), dx staged per group."""
    xhat, gamma, G, norm_cache = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = np.sum(dout * xhat, axis=(0, 2, 3), keepdims=True)
    dxhat_g = (dout * gamma).reshape(N, G, -1)
    dx = _normalize_backward(dxhat_g, norm_cache).reshape(dout.shape)
    return dx, dgamma, dbeta


# ------------------------------------------------------------------------ dropout

def dropout_forward(x, dropout_param):
    """Inverted dropout: mask = (rand < p) / p after np.random.seed(seed), out = x · mask.

    p is the keep probability. Mode "test": out = x.
    """
    p, mode = dropout_param["p"], dropout_param.get("mode", "train")
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    if mode == "train":
        mask = ((np.random.rand(*x.shape) < p) / p).astype(x.dtype)
        out = x * mask
    elif mode == "test":
        mask, out = None, x.copy()
    else:
        raise ValueError(f"unknown dropout mode {mode!r}")
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    """dx = dout · mask (train), dout (test)."""
    dropout_param, mask = cache
    if dropout_param.get("mode", "train") == "train":
        return dout * mask
    return dout.copy()


# ---------------------------------------------------------------------------- conv

def conv_forward_naive(x, w, b, conv_param):
    """out[n, f, i, j] = b[f] + Σ_{c,k,l} w[f, c, k, l] · xpad[n, c, i·sh + k·dh, j·sw + l·dw].

    x (N, C, H, W), w (F, C, HH, WW), b (F,); stride, pad, dilation each an int
    or (h, w) pair; zero padding. out (N, F, H', W') with
    H' = (H + 2·ph − dh·(HH − 1) − 1) // sh + 1, likewise W'.
    """
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    sh, sw = _pair(conv_param.get("stride", 1))
    ph, pw = _pair(conv_param.get("pad", 0))
    dh, dw = _pair(conv_param.get("dilation", 1))
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Hout = (H + 2 * ph - dh * (HH - 1) - 1) // sh + 1
    Wout = (W + 2 * pw - dw * (WW - 1) - 1) // sw + 1
    out = np.zeros((N, F, Hout, Wout), dtype=x.dtype)
    for i in range(Hout):
        for j in range(Wout):
            # the (dilated) receptive field of output (i, j): (N, C, HH, WW)
            window = xpad[:, :, i * sh:i * sh + dh * (HH - 1) + 1:dh,
                          j * sw:j * sw + dw * (WW - 1) + 1:dw]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, (sh, sw), (ph, pw), (dh, dw))


def conv_backward_naive(dout, cache):
    """db[f] = Σ dout[:, f]; for every output (i, j): dw += Σ_n dout[n, :, i, j]·window,
    dxpad[window] += Σ_f dout[:, f, i, j]·w[f]; dx = dxpad without its padding."""
    x, w, (sh, sw), (ph, pw), (dh, dw_) = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Hout, Wout = dout.shape[2:]
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for i in range(Hout):
        for j in range(Wout):
            rows = slice(i * sh, i * sh + dh * (HH - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw_ * (WW - 1) + 1, dw_)
            g = dout[:, :, i, j]                                        # (N, F)
            dw += np.tensordot(g, xpad[:, :, rows, cols], axes=(0, 0))  # (F, C, HH, WW)
            dxpad[:, :, rows, cols] += np.tensordot(g, w, axes=(1, 0))  # (N, C, HH, WW)
    dx = dxpad[:, :, ph:ph + H, pw:pw + W]
    return dx, dw, db


# ------------------------------------------------------------------------- pooling

def max_pool_forward_naive(x, pool_param):
    """out[n, c, i, j] = max of the window x[n, c, i·s : i·s + ph, j·s : j·s + pw];  no padding."""
    N, C, H, W = x.shape
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    Hout, Wout = (H - ph) // s + 1, (W - pw) // s + 1
    out = np.zeros((N, C, Hout, Wout), dtype=x.dtype)
    for i in range(Hout):
        for j in range(Wout):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """Each window's dout goes to ONE maximum: the first in row-major order (np.argmax's)."""
    x, pool_param = cache
    N, C, H, W = x.shape
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    Hout, Wout = dout.shape[2:]
    dx = np.zeros_like(x)
    for i in range(Hout):
        for j in range(Wout):
            window = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            first_max = window.reshape(N, C, -1).argmax(axis=2)              # (N, C)
            onehot = np.arange(ph * pw) == first_max[:, :, None]             # (N, C, ph·pw)
            route = onehot.reshape(N, C, ph, pw) * dout[:, :, i, j, None, None]
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += route
    return dx


def avg_pool_forward(x, pool_param):
    """out[n, c, i, j] = Σ window of the zero-padded x / divisor.

    divisor = ph·pw if count_include_pad (the default), else the number of the
    window's entries that are not padding. pad is an int, default 0.
    """
    N, C, H, W = x.shape
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    include_pad = pool_param.get("count_include_pad", True)
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    real = np.pad(np.ones((H, W), dtype=int), pad)          # 1 where x is, 0 in the padding
    Hout, Wout = (H + 2 * pad - ph) // s + 1, (W + 2 * pad - pw) // s + 1
    out = np.zeros((N, C, Hout, Wout), dtype=x.dtype)
    divisors = np.zeros((Hout, Wout), dtype=int)
    for i in range(Hout):
        for j in range(Wout):
            rows, cols = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
            divisors[i, j] = ph * pw if include_pad else real[rows, cols].sum()
            out[:, :, i, j] = xpad[:, :, rows, cols].sum(axis=(2, 3)) / int(divisors[i, j])
    return out, (x.shape, pool_param, pad, divisors)


def avg_pool_backward(dout, cache):
    """Every entry of a window gets dout / divisor; dx = the padded gradient without its padding."""
    (N, C, H, W), pool_param, pad, divisors = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    Hout, Wout = dout.shape[2:]
    dxpad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    for i in range(Hout):
        for j in range(Wout):
            share = dout[:, :, i, j] / int(divisors[i, j])
            dxpad[:, :, i * s:i * s + ph, j * s:j * s + pw] += share[:, :, None, None]
    return dxpad[:, :, pad:pad + H, pad:pad + W]


# ----------------------------------------------------------------------- embedding

def word_embedding_forward(x, W):
    """out[n, t] = W[x[n, t]];  x (N, T) int, W (V, D) -> out (N, T, D)."""
    return W[x], (x, W.shape, W.dtype)


def word_embedding_backward(dout, cache):
    """dW[v] = Σ_{(n, t): x[n, t] = v} dout[n, t]; repeated indices accumulate (np.add.at)."""
    x, shape, dtype = cache
    dW = np.zeros(shape, dtype=dtype)
    np.add.at(dW, x, dout)
    return dW


# ---------------------------------------------------------------------------- losses

def cross_entropy_forward(x, y, ce_param):
    """torch.nn.functional.cross_entropy:  x (N, C) logits, y (N,) int labels.

    q = (1 − ε)·onehot(y) + ε/C;  loss_i = −Σ_c q_c·log softmax(x_i)_c;
    rows with y_i = ignore_index give 0. reduction "mean": Σ loss_i / #not-ignored
    (0/0 = NaN when every row is ignored, as in torch), "sum": Σ loss_i, "none": (N,).
    """
    ignore_index = ce_param.get("ignore_index", -100)
    eps = float(ce_param.get("label_smoothing", 0.0))
    reduction = ce_param.get("reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")
    N, C = x.shape
    kept = y != ignore_index
    labels = np.where(kept, y, 0)                           # ignored rows: any valid index
    # log softmax, stable: subtract the row max before exponentiating
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    onehot = np.zeros_like(x)
    onehot[np.arange(N), labels] = 1
    q = (1 - eps) * onehot + eps / C
    losses = -np.sum(q * log_probs, axis=1)
    losses[~kept] = 0
    count = int(kept.sum())
    if reduction == "none":
        out = losses
    elif reduction == "sum":
        out = losses.sum()
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = losses.sum() / count
    return out, (np.exp(log_probs), q, kept, count, reduction)


def cross_entropy_backward(dout, cache):
    """dx_i = (softmax(x_i) − q_i) · dL/dloss_i; 0 for ignored rows. dout: scalar, or (N,) for "none"."""
    probs, q, kept, count, reduction = cache
    dx = probs - q
    dx[~kept] = 0
    if reduction == "none":
        dx *= np.asarray(dout)[:, None]
    elif reduction == "sum":
        dx *= dout
    elif count:                                             # "mean"; no kept row: dx stays 0
        dx *= dout / count
    return dx


def softmax_loss(x, y):
    """CS231n's: loss = −(1/N) Σ_n log softmax(x_n)[y_n], dx = (softmax(x) − onehot(y)) / N.

    x (N, C), y (N,) int -> (loss, dx).
    """
    N = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    loss = -log_probs[np.arange(N), y].sum() / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


# ------------------------------------------------------------------------ recurrent

def _sigmoid(x):
    """σ(x) = 1 / (1 + e^−x), stable as CS231n's rnn_layers.sigmoid: e^−|x| never overflows."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """next_h = tanh(x Wx + prev_h Wh + b);  x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,)."""
    a = x @ Wx + prev_h @ Wh + b                           # pre-activation (N, H)
    next_h = np.tanh(a)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """da = dnext_h (1 − next_h²); dx = da Wxᵀ, dprev_h = da Whᵀ, dWx = xᵀ da, dWh = prev_hᵀ da, db = Σ_n da."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)                       # tanh'(a) = 1 − tanh(a)²
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """h[:, t] = rnn_step(x[:, t], h[:, t − 1]), h[:, −1] = h0;  x (N, T, D), h0 (N, H) -> h (N, T, H)."""
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=x.dtype)
    caches = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, caches


def rnn_backward(dh, cache):
    """Backpropagation through time: dh (N, T, H) arrives at every step; going t = T−1 … 0 the step's
    upstream gradient is dh[:, t] + dprev_h (what step t + 1 sent back); dWx, dWh, db accumulate."""
    caches = cache
    N, T, H = dh.shape
    x0, _, Wx, Wh, _ = caches[0]
    D = x0.shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros_like(Wx)
    dWh = np.zeros_like(Wh)
    db = np.zeros(H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, caches[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """CS231n's LSTM step, gates in the order i, f, o, g along the 4H columns:

    a = x Wx + prev_h Wh + b;  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
    next_c = f·prev_c + i·g;  next_h = o·tanh(next_c).
    x (N, D), prev_h, prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,) -> next_h, next_c (N, H).
    """
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = _sigmoid(a[:, 0:H])                                # input gate
    f = _sigmoid(a[:, H:2 * H])                            # forget gate
    o = _sigmoid(a[:, 2 * H:3 * H])                        # output gate
    g = np.tanh(a[:, 3 * H:4 * H])                         # candidate cell
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Stage by stage: dc = dnext_c + dnext_h·o·(1 − tanh²(next_c)); do = dnext_h·tanh(next_c);
    df = dc·prev_c; di = dc·g; dg = dc·i; dprev_c = dc·f; each gate through its derivative
    (σ' = σ(1 − σ), tanh' = 1 − tanh²) into da, then as in the RNN step."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    do = dnext_h * tanh_c
    dtanh_c = dnext_h * o
    dc = dnext_c + dtanh_c * (1 - tanh_c ** 2)
    df = dc * prev_c
    di = dc * g
    dg = dc * i
    dprev_c = dc * f
    da_i = di * i * (1 - i)
    da_f = df * f * (1 - f)
    da_o = do * o * (1 - o)
    da_g = dg * (1 - g ** 2)
    da = np.concatenate([da_i, da_f, da_o, da_g], axis=1)
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """The LSTM over a sequence from h0 and c0 = 0 (CS231n);  x (N, T, D), h0 (N, H) -> h (N, T, H)."""
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=x.dtype)
    prev_h = h0
    prev_c = np.zeros_like(h0)
    caches = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, caches


def lstm_backward(dh, cache):
    """BPTT for the LSTM: both dprev_h and dprev_c of step t + 1 flow into step t (the cell's dnext_c);
    dh[:, t] adds to dnext_h; dWx, dWh, db accumulate over the steps. dh (N, T, H)."""
    caches = cache
    N, T, H = dh.shape
    D = caches[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros_like(caches[0][3])
    dWh = np.zeros_like(caches[0][4])
    db = np.zeros(4 * H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dprev_c = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx_t, dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t, :] + dprev_h, dprev_c, caches[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db
