"""Correct: vectorised backprop written with library-grade stable formulas throughout -- scipy's
expit / log_expit / log_softmax, softplus as max(z, 0) + log1p(e^-|z|), elu through expm1, the exact
gelu through erfc (no cancellation in its left tail), and the sech^2 derivatives of tanh, sigmoid
and gelu_tanh as 1/cosh^2 instead of 1 - tanh^2. Deltas are propagated as dC/da first, then
multiplied by f'(z).
"""
import math

import numpy as np
from scipy import special

EXPECTED = {
    "verdict": "pass",
    "class": None,
    "first_wrong": None,
    "equation": None,
    "family": None,
    "shows_when": None,
}


def sech2(u):
    with np.errstate(over="ignore"):  # cosh overflows to inf far out, where sech^2 is 0
        return 1 / np.cosh(u) ** 2


GK, GC = math.sqrt(2 / math.pi), 0.044715


def f_and_df(name, z):
    """(f(z), f'(z)) for one activation."""
    if name == "identity":
        return z, np.ones_like(z)
    if name == "relu":
        return np.where(z > 0, z, 0 * z), np.heaviside(z, 0).astype(z.dtype)
    if name == "leaky_relu":
        slope = np.where(z > 0, 1, 0.01).astype(z.dtype)
        return slope * z, slope
    if name == "sigmoid":
        return special.expit(z), 0.25 * sech2(z / 2)
    if name == "tanh":
        return np.tanh(z), sech2(z)
    if name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), special.expit(z)
    if name == "elu":
        neg = np.minimum(z, 0)
        return np.where(z > 0, z, np.expm1(neg)), np.where(z > 0, 1, np.exp(neg)).astype(z.dtype)
    if name == "gelu":
        cdf = 0.5 * special.erfc(-z / math.sqrt(2))
        return z * cdf, cdf + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if name == "gelu_tanh":
        u = GK * (z + GC * z**3)
        t = np.tanh(u)
        return 0.5 * z * (1 + t), 0.5 * (1 + t) + 0.5 * z * sech2(u) * GK * (1 + 3 * GC * z * z)
    if name == "silu":
        s = special.expit(z)
        return z * s, s * (1 + z * special.expit(-z))
    raise NotImplementedError(name)


def head(name, z, a, y):
    """(C, dC/dz of the last layer, or None, dC/da) for the output pre-activation z and output a."""
    B, D = a.shape
    if name in ("sse", "half_sse", "mse", "quadratic"):
        k = {"sse": 1.0, "half_sse": 0.5, "mse": 1.0 / (B * D), "quadratic": 0.5 / B}[name]
        d = a - y
        return k * np.einsum("ij,ij->", d, d), None, (2 * k) * d
    if name in ("binary_cross_entropy", "bce_with_logits"):  # -log sigmoid(+-z), from the logits
        C = -np.sum(y * special.log_expit(z) + (1 - y) * special.log_expit(-z)) / (B * D)
        return C, (special.expit(z) - y) / (B * D), None
    if name == "softmax_cross_entropy":
        logp = special.log_softmax(z, axis=1)
        g = special.softmax(z, axis=1)
        g[np.arange(B), y] -= 1
        return -np.sum(logp[np.arange(B), y]) / B, g / B, None
    raise NotImplementedError(name)


def backprop(spec, params, x, y):
    dt = np.dtype(spec["dtype"])
    layers = spec["layers"]
    Ws = [np.asarray(params[f"layers.{i}.W"], dt) for i in range(len(layers))]
    bs = [np.asarray(params[f"layers.{i}.b"], dt) for i in range(len(layers))]
    x = np.asarray(x, dt)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dt)
    cache, h = [], x
    for W, b, layer in zip(Ws, bs, layers):
        z = np.matmul(h, W.T) + b
        a, df = f_and_df(layer["activation"], z)
        cache.append((h, z, a, df))
        h = a
    C, delta, dC_da = head(spec["loss"], cache[-1][1], cache[-1][2], y)
    out = {"loss": float(C), "grads": {}, "deltas": {}, "activations": {}, "pre_activations": {}}
    for i in reversed(range(len(layers))):
        h_in, z, a, df = cache[i]
        if delta is None:
            delta = dC_da * df
        name = f"layers.{i}"
        out["deltas"][name], out["activations"][name], out["pre_activations"][name] = delta, a, z
        out["grads"][name + ".W"] = np.matmul(delta.T, h_in)
        out["grads"][name + ".b"] = np.add.reduce(delta, axis=0)
        dC_da, delta = np.matmul(delta, Ws[i]), None
    out["input_grad"] = dC_da
    return out
