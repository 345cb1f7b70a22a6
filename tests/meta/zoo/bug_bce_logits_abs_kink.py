"""MLP backprop whose bce_with_logits gradient is differentiated term by term from the stable form
max(z, 0) - z y + log1p(e^-|z|), with d max(z, 0)/dz = (z > 0) and d|z|/dz = sign(z): right for every
logit but an exact 0, where both one-sided terms are taken as 0 and the gradient comes out -y instead
of 1/2 - y. The loss itself is right; a logit of exactly 0 (a zero input row through zero biases, a
dead output unit) gets the wrong delta.
"""
import math

import numpy as np
from scipy.special import erfc

EXPECTED = {
    "verdict": "fail",
    "class": "bug",
    "first_wrong": "delta",
    "equation": "BP1",
    "family": "zero_kinks",
    "shows_when": "bce_with_logits with a logit exactly 0: dC/dz there is -y instead of 1/2 - y",
}


def sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1 / (1 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1 + ez)
    return out


def activate(name, z):
    if name == "identity":
        return z.copy()
    elif name == "relu":
        return z * (z > 0)
    elif name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    elif name == "sigmoid":
        return sigmoid(z)
    elif name == "tanh":
        return np.tanh(z)
    elif name == "softplus":
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    elif name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    elif name == "gelu":
        return z * 0.5 * erfc(-z / math.sqrt(2))
    elif name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    elif name == "silu":
        return z * sigmoid(z)
    raise NotImplementedError(name)


def derivative(name, z, a):
    """f'(z); a = f(z) is passed too, for the activations whose derivative reads best from it."""
    if name == "identity":
        return np.ones_like(z)
    elif name == "relu":
        return (z > 0).astype(z.dtype)
    elif name == "leaky_relu":
        return np.where(z > 0, 1, 0.01).astype(z.dtype)
    elif name == "sigmoid":
        return a * (1 - a)
    elif name == "tanh":
        return 1 - a * a
    elif name == "softplus":
        return sigmoid(z)
    elif name == "elu":
        return np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype)
    elif name == "gelu":
        return 0.5 * erfc(-z / math.sqrt(2)) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    elif name == "gelu_tanh":
        k, c = math.sqrt(2 / math.pi), 0.044715
        t = np.tanh(k * (z + c * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * c * z * z)
    elif name == "silu":
        s = sigmoid(z)
        return s + a * (1 - s)
    raise NotImplementedError(name)


def loss_and_grad(name, z, a, y):
    """C and dC/da. For the logits losses the last activation is the identity, so a is z."""
    n, B = a.size, a.shape[0]
    if name == "sse":
        return np.sum((a - y) ** 2), 2 * (a - y)
    elif name == "half_sse":
        return 0.5 * np.sum((a - y) ** 2), a - y
    elif name == "mse":
        return np.sum((a - y) ** 2) / n, 2 * (a - y) / n
    elif name == "quadratic":
        return np.sum((a - y) ** 2) / (2 * B), (a - y) / B
    elif name == "binary_cross_entropy":  # a = sigmoid(z); the loss is read from z, where it does not saturate
        C = np.sum(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)) / n
        return C, -(y / a - (1 - y) / (1 - a)) / n
    elif name == "bce_with_logits":
        C = np.sum(np.maximum(a, 0) - a * y + np.log1p(np.exp(-np.abs(a)))) / n
        # term by term: max(z, 0) -> (z > 0), -z y -> -y, log1p(e^-|z|) -> -sigmoid(-|z|) sign(z)
        return C, ((a > 0) - y - np.sign(a) * sigmoid(-np.abs(a))) / n
    elif name == "softmax_cross_entropy":
        m = a.max(axis=1, keepdims=True)
        e = np.exp(a - m)
        lse = m[:, 0] + np.log(e.sum(axis=1))
        rows = np.arange(B)
        p = e / e.sum(axis=1, keepdims=True)
        p[rows, y] -= 1
        return np.sum(lse - a[rows, y]) / B, p / B
    raise NotImplementedError(name)


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    acts_names = [layer["activation"] for layer in spec["layers"]]
    L = len(acts_names)
    x = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
    p = {k: np.asarray(v, dtype) for k, v in params.items()}

    zs, acts, a = [], [], x
    for i in range(L):
        z = a @ p[f"layers.{i}.W"].T + p[f"layers.{i}.b"]
        a = activate(acts_names[i], z)
        zs.append(z)
        acts.append(a)

    C, dC_da = loss_and_grad(spec["loss"], zs[-1], acts[-1], y)
    if spec["loss"] == "binary_cross_entropy":
        delta = (acts[-1] - y) / y.size  # dC/da * a(1 - a), simplified: no 0/0 when a saturates
    else:
        delta = dC_da * derivative(acts_names[-1], zs[-1], acts[-1])  # BP1
    out = {"loss": float(C), "grads": {}, "deltas": {},
           "activations": {f"layers.{i}": acts[i] for i in range(L)},
           "pre_activations": {f"layers.{i}": zs[i] for i in range(L)}}
    for i in range(L - 1, -1, -1):
        out["deltas"][f"layers.{i}"] = delta
        out["grads"][f"layers.{i}.W"] = delta.T @ (acts[i - 1] if i else x)  # BP4
        out["grads"][f"layers.{i}.b"] = np.sum(delta, axis=0)  # BP3
        upstream = delta @ p[f"layers.{i}.W"]
        if i:
            delta = upstream * derivative(acts_names[i - 1], zs[i - 1], acts[i - 1])  # BP2
    out["input_grad"] = upstream
    return out
