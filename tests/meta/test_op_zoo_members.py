"""The op zoo's mutants are really wrong, where they say, and only there.

Each member of tests/meta/op_zoo implements one op of the layer contract (docs/layers_contract.md)
with one slip. For every member REGIONS holds an input in the region its EXPECTED["shows_when"]
names. The test takes central finite differences in float64 of the member's own forward (of a
correct forward written here, for a slip in the forward), with a non-uniform random upstream
gradient, and asserts that the member's tensor EXPECTED["tensor"] is more than 1e-3 (relative) away
from it: the slip is real. Members whose slip only shows on an edge also carry an input outside
that region, where the member must agree with the correct op.
"""
import copy
import importlib.util
import math
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
from scipy.special import logsumexp

ZOO = Path(__file__).parent / "op_zoo"
MEMBERS = sorted(p.name for p in ZOO.glob("bug_*.py"))
WRONG = 1e-3        # a slip is real when the wrong tensor is this far (relative) from the truth

# the one-pass variance mutant takes the square root of a variance that cancelled to a negative number
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")


def load(name):
    """A fresh import of member ``name`` (a file name): no state carried over between tests."""
    spec = importlib.util.spec_from_file_location(f"op_zoo_{name[:-3]}", ZOO / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- correct forwards -------------------------------------------------------------------------

def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _normalise(x, axes, eps):
    xc = x - x.mean(axis=axes, keepdims=True)
    return xc / np.sqrt((xc ** 2).mean(axis=axes, keepdims=True) + eps)


def ref_affine(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b


def ref_batchnorm(x, gamma, beta, bn_param):
    return gamma * _normalise(x, 0, bn_param["eps"]) + beta


def ref_spatial_batchnorm(x, gamma, beta, bn_param):
    return gamma[:, None, None] * _normalise(x, (0, 2, 3), bn_param["eps"]) + beta[:, None, None]


def ref_layernorm(x, gamma, beta, ln_param):
    return gamma * _normalise(x, 1, ln_param["eps"]) + beta


def ref_rmsnorm(x, gamma, rms_param):
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + rms_param["eps"]) * gamma


def ref_groupnorm(x, gamma, beta, G, gn_param):
    N = x.shape[0]
    return gamma * _normalise(x.reshape(N, G, -1), 2, gn_param["eps"]).reshape(x.shape) + beta


def ref_dropout(x, dropout_param):
    np.random.seed(dropout_param["seed"])
    p = dropout_param["p"]
    return x * (np.random.rand(*x.shape) < p) / p


def ref_conv2d(x, w, b, conv_param):
    (sh, sw), (ph, pw) = _pair(conv_param["stride"]), _pair(conv_param["pad"])
    dh, dw = _pair(conv_param.get("dilation", 1))
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = 1 + (H + 2 * ph - dh * (HH - 1) - 1) // sh, 1 + (W + 2 * pw - dw * (WW - 1) - 1) // sw
    out = np.empty((N, F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * sh:i * sh + dh * (HH - 1) + 1:dh, j * sw:j * sw + dw * (WW - 1) + 1:dw]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", win, w) + b
    return out


def _pool(x, pool_param, reduce):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    pad = pool_param.get("pad", 0)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    real = np.pad(np.ones((H, W)), pad)
    Ho, Wo = 1 + (H + 2 * pad - ph) // s, 1 + (W + 2 * pad - pw) // s
    out = np.empty((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
            out[:, :, i, j] = reduce(xp[:, :, rows, cols], real[rows, cols])
    return out


def ref_maxpool2d(x, pool_param):
    return _pool(x, pool_param, lambda win, real: win.max(axis=(2, 3)))


def ref_avgpool2d(x, pool_param):
    include = pool_param.get("count_include_pad", True)
    return _pool(x, pool_param, lambda win, real: win.sum(axis=(2, 3)) / (real.size if include else real.sum()))


def ref_embedding(x, W):
    return W[x]


def ref_cross_entropy(x, y, ce_param):
    eps = ce_param.get("label_smoothing", 0.0)
    keep = y != ce_param.get("ignore_index", -100)
    C = x.shape[1]
    logp = x - logsumexp(x, axis=1, keepdims=True)
    q = (1 - eps) * (np.arange(C) == np.where(keep, y, 0)[:, None]) + eps / C
    loss = -(q * logp).sum(axis=1) * keep
    reduction = ce_param.get("reduction", "mean")
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.sum() / keep.sum()


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _lstm_cell(x, h, c, Wx, Wh, b):
    i, f, o, g = np.split(x @ Wx + h @ Wh + b, 4, axis=1)          # CS231n's gate order i, f, o, g
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def ref_rnn_step(x, prev_h, Wx, Wh, b):
    return np.tanh(x @ Wx + prev_h @ Wh + b)


def ref_rnn(x, h0, Wx, Wh, b):
    hs, h = [], h0
    for t in range(x.shape[1]):
        h = ref_rnn_step(x[:, t], h, Wx, Wh, b)
        hs.append(h)
    return np.stack(hs, axis=1)


def ref_lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    return np.concatenate(_lstm_cell(x, prev_h, prev_c, Wx, Wh, b), axis=1)     # [next_h | next_c]


def ref_lstm(x, h0, Wx, Wh, b):
    hs, h, c = [], h0, np.zeros_like(h0)
    for t in range(x.shape[1]):
        h, c = _lstm_cell(x[:, t], h, c, Wx, Wh, b)
        hs.append(h)
    return np.stack(hs, axis=1)


class Op(NamedTuple):
    forward: str
    backward: str
    wrt: tuple          # positions of the differentiated arguments of the forward
    grads: tuple        # the backward's return values, in order
    ref: Callable
    outputs: int = 1    # the forward's outputs before its cache, joined on the last axis (lstm_step: 2)


OPS = {
    "affine": Op("affine_forward", "affine_backward", (0, 1, 2), ("dx", "dw", "db"), ref_affine),
    "batchnorm": Op("batchnorm_forward", "batchnorm_backward", (0, 1, 2), ("dx", "dgamma", "dbeta"), ref_batchnorm),
    "spatial_batchnorm": Op("spatial_batchnorm_forward", "spatial_batchnorm_backward", (0, 1, 2),
                            ("dx", "dgamma", "dbeta"), ref_spatial_batchnorm),
    "layernorm": Op("layernorm_forward", "layernorm_backward", (0, 1, 2), ("dx", "dgamma", "dbeta"), ref_layernorm),
    "rmsnorm": Op("rmsnorm_forward", "rmsnorm_backward", (0, 1), ("dx", "dgamma"), ref_rmsnorm),
    "groupnorm": Op("spatial_groupnorm_forward", "spatial_groupnorm_backward", (0, 1, 2),
                    ("dx", "dgamma", "dbeta"), ref_groupnorm),
    "dropout": Op("dropout_forward", "dropout_backward", (0,), ("dx",), ref_dropout),
    "conv2d": Op("conv_forward_naive", "conv_backward_naive", (0, 1, 2), ("dx", "dw", "db"), ref_conv2d),
    "maxpool2d": Op("max_pool_forward_naive", "max_pool_backward_naive", (0,), ("dx",), ref_maxpool2d),
    "avgpool2d": Op("avg_pool_forward", "avg_pool_backward", (0,), ("dx",), ref_avgpool2d),
    "embedding": Op("word_embedding_forward", "word_embedding_backward", (1,), ("dW",), ref_embedding),
    "cross_entropy": Op("cross_entropy_forward", "cross_entropy_backward", (0,), ("dx",), ref_cross_entropy),
    "rnn_step": Op("rnn_step_forward", "rnn_step_backward", (0, 1, 2, 3, 4), ("dx", "dprev_h", "dWx", "dWh", "db"),
                   ref_rnn_step),
    "rnn": Op("rnn_forward", "rnn_backward", (0, 1, 2, 3, 4), ("dx", "dh0", "dWx", "dWh", "db"), ref_rnn),
    "lstm_step": Op("lstm_step_forward", "lstm_step_backward", (0, 1, 2, 3, 4, 5),
                    ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"), ref_lstm_step, outputs=2),
    "lstm": Op("lstm_forward", "lstm_backward", (0, 1, 2, 3, 4), ("dx", "dh0", "dWx", "dWh", "db"), ref_lstm),
}


def joined(op, result):
    """The forward's output: its one output, or its outputs joined on the last axis; (output, cache)."""
    *outs, cache = result
    return (outs[0] if op.outputs == 1 else np.concatenate(outs, axis=-1)), cache


# ---- inputs -----------------------------------------------------------------------------------
# Each builder returns make(rng) -> the forward's argument list; float arrays are float64 unless
# dtype says otherwise.

def _columns(rng, shape, loc, scale, axis):
    """Normal entries with a different centre and spread along ``axis``, around loc and scale."""
    n = shape[axis]
    bshape = [1] * len(shape)
    bshape[axis] = n
    centre = loc + scale * rng.uniform(-1, 1, n).reshape(bshape)
    spread = scale * rng.uniform(0.5, 2.0, n).reshape(bshape)
    return centre + spread * rng.standard_normal(shape)


def affine(N=3, feat=(2, 3), M=4):
    def make(rng):
        D = math.prod(feat)
        return [rng.standard_normal((N, *feat)), rng.standard_normal((D, M)), rng.standard_normal(M)]
    return make


def batchnorm(N=5, D=3, loc=0.0, scale=1.0, eps=1e-5, dtype=np.float64):
    def make(rng):
        x = _columns(rng, (N, D), loc, scale, axis=1).astype(dtype)
        gamma, beta = 1 + 0.5 * rng.standard_normal(D), 0.5 * rng.standard_normal(D)
        return [x, gamma.astype(dtype), beta.astype(dtype), {"mode": "train", "eps": eps, "momentum": 0.9}]
    return make


def spatial_batchnorm(N=2, C=3, H=2, W=3):
    def make(rng):
        x = _columns(rng, (N, C, H, W), 0.0, 1.0, axis=1)
        return [x, 1 + 0.5 * rng.standard_normal(C), 0.5 * rng.standard_normal(C),
                {"mode": "train", "eps": 1e-5, "momentum": 0.9}]
    return make


def layernorm(N=4, D=5, loc=0.0, scale=1.0, eps=1e-5):
    def make(rng):
        x = _columns(rng, (N, D), loc, scale, axis=0)
        return [x, 1 + 0.5 * rng.standard_normal(D), 0.5 * rng.standard_normal(D), {"eps": eps}]
    return make


def rmsnorm(N=4, D=5, scale=1.0, eps=1e-5):
    def make(rng):
        x = _columns(rng, (N, D), 0.0, scale, axis=0)
        return [x, 1 + 0.5 * rng.standard_normal(D), {"eps": eps}]
    return make


def groupnorm(N=2, C=4, H=3, W=3, G=2, gamma_ones=False):
    def make(rng):
        x = _columns(rng, (N, C, H, W), 0.0, 1.0, axis=1)
        gamma = np.ones((1, C, 1, 1)) if gamma_ones else 1 + 0.5 * rng.standard_normal((1, C, 1, 1))
        return [x, gamma, 0.5 * rng.standard_normal((1, C, 1, 1)), G, {"eps": 1e-5}]
    return make


def dropout(shape=(4, 5), p=0.6, seed=3):
    def make(rng):
        return [rng.standard_normal(shape), {"p": p, "mode": "train", "seed": seed}]
    return make


def conv2d(N=2, C=2, H=5, W=5, F=3, k=(3, 3), stride=1, pad=0, dilation=1):
    def make(rng):
        return [rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, *k)), rng.standard_normal(F),
                {"stride": stride, "pad": pad, "dilation": dilation}]
    return make


def pool(shape=(2, 2, 6, 6), size=(2, 2), stride=2, pad=None, count_include_pad=None, ties=False):
    def make(rng):
        x = rng.integers(0, 2, shape).astype(np.float64) if ties else rng.standard_normal(shape)
        param = {"pool_height": size[0], "pool_width": size[1], "stride": stride}
        if pad is not None:
            param["pad"] = pad
        if count_include_pad is not None:
            param["count_include_pad"] = count_include_pad
        return [x, param]
    return make


def embedding(N=2, T=4, V=5, D=3, distinct=False):
    def make(rng):
        x = rng.permutation(V)[:N * T].reshape(N, T) if distinct else rng.integers(0, V, (N, T))
        return [x.astype(np.int64), rng.standard_normal((V, D))]
    return make


def cross_entropy(N=4, C=3, reduction="mean", smoothing=0.0, ignored=0, offsets=None):
    """Logits (rows shifted by ``offsets`` where given), labels (the first ``ignored`` ignored), options."""
    def make(rng):
        y = rng.integers(0, C, N)
        y[:ignored] = -100
        x = 2 * rng.standard_normal((N, C)) + (0 if offsets is None else np.asarray(offsets, float)[:, None])
        return [x, y.astype(np.int64), {"ignore_index": -100, "label_smoothing": smoothing, "reduction": reduction}]
    return make


def recurrent(N=2, T=3, D=3, H=3, gates=1, sequence=True, state=1):
    """x, the initial state(s) and the weights of an RNN (gates=1) or LSTM (gates=4), in CS231n's order."""
    def make(rng):
        x = rng.standard_normal((N, T, D) if sequence else (N, D))
        states = [rng.standard_normal((N, H)) for _ in range(state)]
        return [x, *states, 0.5 * rng.standard_normal((D, gates * H)), 0.5 * rng.standard_normal((H, gates * H)),
                0.5 * rng.standard_normal(gates * H)]
    return make


# Per member: "region" (an input where the slip shows); "outside" (edge-only slips: an input where
# the member must be right) with "outside_tol"; "calls" (backward calls on one cache before the
# result is read); "also_wrong" (other tensors the same slip breaks).
REGIONS = {
    "bug_affine_db_mean.py": dict(region=affine(N=3), outside=affine(N=1)),
    "bug_affine_dx_not_reshaped.py": dict(region=affine(feat=(2, 3)), outside=affine(feat=(6,))),
    "bug_affine_dw_transposed.py": dict(region=affine(feat=(2, 2), M=4)),

    "bug_batchnorm_no_mean_term.py": dict(region=batchnorm()),
    "bug_batchnorm_no_xhat_term.py": dict(region=batchnorm()),
    "bug_batchnorm_bessel_var.py": dict(region=batchnorm(N=4)),
    "bug_batchnorm_eps_outside_sqrt.py": dict(region=batchnorm(loc=2.0, scale=1e-3),
                                              outside=batchnorm(), outside_tol=1e-4),
    "bug_batchnorm_var_cancellation.py": dict(region=batchnorm(N=8, loc=1e4, scale=1.0, dtype=np.float32),
                                              outside=batchnorm(N=8, dtype=np.float32), outside_tol=1e-4),
    "bug_batchnorm_dgamma_no_xhat.py": dict(region=batchnorm()),

    "bug_spatial_batchnorm_plain_reshape.py": dict(region=spatial_batchnorm(),
                                                   outside=spatial_batchnorm(N=4, H=1, W=1)),
    "bug_spatial_batchnorm_dx_plain_reshape.py": dict(region=spatial_batchnorm(),
                                                      outside=spatial_batchnorm(N=4, H=1, W=1)),
    "bug_spatial_batchnorm_batch_axis_only.py": dict(region=spatial_batchnorm(),
                                                     outside=spatial_batchnorm(N=4, H=1, W=1)),
    "bug_spatial_batchnorm_count_n.py": dict(region=spatial_batchnorm(),
                                             outside=spatial_batchnorm(N=4, H=1, W=1)),

    "bug_layernorm_double_mean.py": dict(region=layernorm()),
    "bug_layernorm_param_grads_axis.py": dict(region=layernorm(N=4, D=4), also_wrong=("dbeta",)),
    "bug_layernorm_eps_outside_sqrt.py": dict(region=layernorm(loc=2.0, scale=1e-3),
                                              outside=layernorm(), outside_tol=1e-4),
    "bug_layernorm_batch_size_divisor.py": dict(region=layernorm(N=3, D=5), outside=layernorm(N=4, D=4)),

    "bug_rmsnorm_no_projection.py": dict(region=rmsnorm()),
    "bug_rmsnorm_stats_over_batch.py": dict(region=rmsnorm()),
    "bug_rmsnorm_no_keepdims.py": dict(region=rmsnorm(N=4, D=4)),
    "bug_rmsnorm_eps_outside_sqrt.py": dict(region=rmsnorm(scale=1e-3), outside=rmsnorm(), outside_tol=1e-4),

    "bug_groupnorm_per_channel.py": dict(region=groupnorm(G=2), outside=groupnorm(G=4)),
    "bug_groupnorm_dgamma_per_group.py": dict(region=groupnorm(G=2), outside=groupnorm(G=4)),
    "bug_groupnorm_no_mean_term.py": dict(region=groupnorm()),
    "bug_groupnorm_dx_without_gamma.py": dict(region=groupnorm(), outside=groupnorm(gamma_ones=True)),

    "bug_dropout_backward_no_mask.py": dict(region=dropout()),
    "bug_dropout_backward_no_scale.py": dict(region=dropout(p=0.6), outside=dropout(p=1.0)),
    "bug_dropout_p_as_drop_probability.py": dict(region=dropout(p=0.5)),
    "bug_dropout_mask_redrawn.py": dict(region=dropout()),

    # (6 + 2 - 3) % 2 == 1: one row and one column covered by no window; 7 divides exactly
    "bug_conv2d_stride_remainder.py": dict(region=conv2d(H=6, W=6, stride=2, pad=1),
                                           outside=conv2d(H=7, W=7, stride=2, pad=1)),
    "bug_conv2d_pad_crop_corner.py": dict(region=conv2d(pad=1), outside=conv2d(pad=0)),
    "bug_conv2d_stride_dilation_swapped.py": dict(region=conv2d(H=7, W=7, stride=2, dilation=1),
                                                  outside=conv2d(H=9, W=9, stride=2, dilation=2)),
    "bug_conv2d_dw_last_sample.py": dict(region=conv2d(N=2, H=7, W=7, stride=(2, 1), pad=(1, 0), dilation=(1, 2)),
                                         outside=conv2d(N=1, H=7, W=7, stride=(2, 1), pad=(1, 0), dilation=(1, 2))),

    "bug_maxpool2d_ties_all_max.py": dict(region=pool(ties=True), outside=pool()),
    "bug_maxpool2d_overlap_assign.py": dict(region=pool(shape=(2, 2, 5, 5), size=(3, 3), stride=1),
                                            outside=pool(size=(3, 3), stride=3)),
    "bug_maxpool2d_unravel_width.py": dict(region=pool(shape=(2, 2, 7, 5), size=(3, 2), stride=2),
                                           outside=pool(size=(2, 2), stride=2)),

    "bug_avgpool2d_count_include_pad_backward.py": dict(
        region=pool(shape=(2, 2, 5, 5), size=(3, 3), stride=2, pad=1, count_include_pad=False),
        outside=pool(shape=(2, 2, 5, 5), size=(3, 3), stride=2, pad=1, count_include_pad=True)),
    "bug_avgpool2d_overlap_assign.py": dict(region=pool(shape=(2, 2, 5, 5), size=(3, 3), stride=1, pad=1),
                                            outside=pool(shape=(2, 2, 6, 6), size=(3, 3), stride=3, pad=0)),
    "bug_avgpool2d_first_window_count.py": dict(
        region=pool(shape=(2, 2, 5, 5), size=(3, 3), stride=2, pad=1, count_include_pad=False),
        outside=pool(shape=(2, 2, 5, 5), size=(3, 3), stride=2, pad=1, count_include_pad=True)),

    "bug_embedding_fancy_index_add.py": dict(region=embedding(N=2, T=4, V=5),
                                             outside=embedding(N=2, T=3, V=8, distinct=True)),
    "bug_embedding_time_major_flatten.py": dict(region=embedding(N=2, T=3, V=6), outside=embedding(N=1, T=4, V=6)),
    "bug_embedding_grad_buffer_not_zeroed.py": dict(region=embedding(), calls=2, outside=embedding()),

    "bug_cross_entropy_none_first_dout.py": dict(region=cross_entropy(reduction="none"),
                                                 outside=cross_entropy(reduction="mean")),
    "bug_cross_entropy_ignored_in_denominator.py": dict(region=cross_entropy(N=5, ignored=2),
                                                        outside=cross_entropy(N=5)),
    "bug_cross_entropy_smoothing_c_minus_1.py": dict(region=cross_entropy(C=5, smoothing=0.2),
                                                     outside=cross_entropy(C=5, smoothing=0.0)),
    "bug_cross_entropy_mean_no_1_over_n.py": dict(region=cross_entropy(reduction="mean"),
                                                  outside=cross_entropy(reduction="sum")),
    "bug_cross_entropy_smoothing_on_ignored.py": dict(region=cross_entropy(N=5, ignored=2, smoothing=0.2),
                                                      outside=cross_entropy(N=5, smoothing=0.2)),

    "bug_rnn_step_tanh_prime_of_preactivation.py": dict(region=recurrent(sequence=False),
                                                        also_wrong=("dprev_h", "dWx", "dWh", "db")),
    "bug_rnn_step_dprev_h_no_transpose.py": dict(region=recurrent(sequence=False, H=3),
                                                 outside=recurrent(sequence=False, H=1)),
    "bug_rnn_step_tanh_prime_of_prev_h.py": dict(region=recurrent(sequence=False),
                                                 also_wrong=("dprev_h", "dWx", "dWh", "db")),
    "bug_rnn_dh_not_carried.py": dict(region=recurrent(T=3), outside=recurrent(T=1),
                                      also_wrong=("dh0", "dWx", "dWh", "db")),
    "bug_rnn_dwh_assigned.py": dict(region=recurrent(T=3), outside=recurrent(T=1)),
    "bug_rnn_dwh_current_state.py": dict(region=recurrent(T=3)),
    "bug_lstm_step_dprev_c_no_forget.py": dict(region=recurrent(sequence=False, gates=4, state=2)),
    "bug_lstm_step_df_no_prev_c.py": dict(region=recurrent(sequence=False, gates=4, state=2),
                                          also_wrong=("dprev_h", "dWx", "dWh", "db")),
    "bug_lstm_step_no_tanh_prime_c.py": dict(region=recurrent(sequence=False, gates=4, state=2),
                                             also_wrong=("dprev_h", "dprev_c", "dWx", "dWh", "db")),
    "bug_lstm_dh_not_carried.py": dict(region=recurrent(T=3, gates=4), outside=recurrent(T=1, gates=4),
                                       also_wrong=("dh0", "dWx", "dWh", "db")),
    "bug_lstm_dc_no_forget.py": dict(region=recurrent(T=3, gates=4), outside=recurrent(T=1, gates=4),
                                     also_wrong=("dh0", "dWx", "dWh", "db")),
    "bug_lstm_dwh_assigned.py": dict(region=recurrent(T=3, gates=4), outside=recurrent(T=1, gates=4)),
}


# ---- checking ---------------------------------------------------------------------------------

def rel(got, want):
    """Relative distance ||got - want|| / max(||got||, ||want||); inf for another shape or a non-finite value."""
    got, want = np.asarray(got), np.asarray(want, np.float64)
    if got.shape != want.shape or not np.all(np.isfinite(got)):
        return math.inf
    got = got.astype(np.float64)
    scale = max(np.linalg.norm(got), np.linalg.norm(want))
    return float(np.linalg.norm(got - want) / scale) if scale else 0.0


def as64(args):
    return [a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else copy.deepcopy(a)
            for a in args]


def finite_differences(f, args, wrt, dout, h=1e-6):
    """Central differences of sum(f(*args) * dout) with respect to args[i] for i in wrt."""
    args = as64(args)
    grads = []
    for i in wrt:
        a = args[i]
        g = np.zeros_like(a)
        for k in np.ndindex(a.shape):
            v = a[k]
            a[k] = v + h
            up = np.sum(np.asarray(f(*args), np.float64) * dout)
            a[k] = v - h
            down = np.sum(np.asarray(f(*args), np.float64) * dout)
            a[k] = v
            g[k] = (up - down) / (2 * h)
        grads.append(g)
    return grads


def run(member, op, args, rng, calls=1):
    """The member's forward, then its backward `calls` times on one cache: (out, dout, {name: grad})."""
    out, cache = joined(op, getattr(member, op.forward)(*copy.deepcopy(args)))
    dtype = args[op.wrt[0]].dtype
    dout = np.asarray(rng.standard_normal(np.shape(out)), dtype)
    for _ in range(calls):
        parts = (dout,) if op.outputs == 1 else np.split(dout, op.outputs, axis=-1)
        grads = getattr(member, op.backward)(*parts, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(op.grads)
    return out, dout, dict(zip(op.grads, grads))


def test_every_member_has_a_region():
    assert MEMBERS and sorted(REGIONS) == MEMBERS


def test_every_op_has_three_members():
    ops = [load(name).EXPECTED["op"] for name in MEMBERS]
    assert {op: ops.count(op) for op in OPS if ops.count(op) < 3} == {}


@pytest.mark.parametrize("name", MEMBERS)
def test_expected_is_well_formed(name):
    member = load(name)
    exp = member.EXPECTED
    assert {"op", "tensor", "slip", "shows_when"} <= set(exp) <= {"op", "tensor", "slip", "shows_when", "also"}
    op = OPS[exp["op"]]
    assert exp["tensor"] in ("out",) + op.grads
    assert name == f"bug_{exp['op']}_{exp['slip']}.py"
    assert exp["shows_when"].strip()
    assert member.__doc__ and member.__doc__.strip()
    assert callable(getattr(member, op.forward)) and callable(getattr(member, op.backward))


@pytest.mark.parametrize("name", MEMBERS)
def test_slip_is_real_in_its_region(name):
    member, case = load(name), REGIONS[name]
    exp = member.EXPECTED
    op = OPS[exp["op"]]
    rng = np.random.default_rng(MEMBERS.index(name))
    args = case["region"](rng)
    out, dout, grads = run(member, op, args, rng, case.get("calls", 1))
    ref_out = op.ref(*as64(args))
    if exp["tensor"] == "out":
        fd = finite_differences(op.ref, args, op.wrt, dout.astype(np.float64))
        assert rel(out, ref_out) > WRONG, "the forward is right in the region"
        assert max(rel(grads[g], want) for g, want in zip(op.grads, fd)) > WRONG, "the backward is right"
    else:
        own = lambda *a: joined(op, getattr(member, op.forward)(*a))[0]
        fd = dict(zip(op.grads, finite_differences(own, args, op.wrt, dout.astype(np.float64))))
        assert rel(out, ref_out) < 1e-9, "the forward is wrong: the slip should be in the backward"
        assert rel(grads[exp["tensor"]], fd[exp["tensor"]]) > WRONG, f"{exp['tensor']} is right in the region"
        for g in op.grads:
            if g != exp["tensor"] and g not in case.get("also_wrong", ()):
                assert rel(grads[g], fd[g]) < 1e-6, f"{g} is wrong too"


@pytest.mark.parametrize("name", [n for n in MEMBERS if "outside" in REGIONS[n]])
def test_right_outside_its_region(name):
    member, case = load(name), REGIONS[name]
    op = OPS[member.EXPECTED["op"]]
    tol = case.get("outside_tol", 1e-6)
    rng = np.random.default_rng(1000 + MEMBERS.index(name))
    args = case["outside"](rng)
    out, dout, grads = run(member, op, args, rng)
    fd = finite_differences(op.ref, args, op.wrt, dout.astype(np.float64))
    assert rel(out, op.ref(*as64(args))) < tol
    for g, want in zip(op.grads, fd):
        assert rel(grads[g], want) < tol, g


@pytest.mark.parametrize("name", MEMBERS)
def test_computes_in_the_input_dtype(name):
    member, case = load(name), REGIONS[name]
    op = OPS[member.EXPECTED["op"]]
    rng = np.random.default_rng(2000 + MEMBERS.index(name))
    args = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
            for a in case["region"](rng)]
    out, _, grads = run(member, op, args, rng)
    assert np.asarray(out).dtype == np.float32
    assert {g: np.asarray(v).dtype for g, v in grads.items()} == {g: np.dtype(np.float32) for g in op.grads}


def test_readme_lists_every_member():
    readme = (ZOO / "README.md").read_text()
    for name in MEMBERS:
        exp = load(name).EXPECTED
        assert f"| `{name[:-3]}` | {exp['op']} | `{exp['tensor']}` | `{exp['slip']}` |" in readme, name
