"""Column-form MLP backprop whose BP2 multiplies by the weights of the current layer, W^l, instead of
the next one, W^{l+1}. Shapes only allow it when neighbouring layers are square (elsewhere numpy
raises a shape error); there the values are silently wrong.
"""
import math

import numpy as np
from scipy import special

EXPECTED = {
    "verdict": "fail",
    "class": "bug",
    "first_wrong": "delta",
    "equation": "BP2",
    "family": "square",
    "shows_when": "depth >= 2 with square layers; other shapes raise a ValueError (adapter error)",
    "exit_code": 2,          # the raises on non-square layers are errors, and errors win over failures
}


def act(name, z):
    if name == "identity":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "sigmoid":
        return special.expit(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "softplus":
        return np.logaddexp(0, z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        return 0.5 * z * special.erfc(-z / math.sqrt(2))
    if name == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    if name == "silu":
        return z * special.expit(z)
    raise NotImplementedError(name)


def act_prime(name, z):
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1, 0.01).astype(z.dtype)
    if name in ("sigmoid", "softplus"):
        s = special.expit(z)
        return s * special.expit(-z) if name == "sigmoid" else s
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "elu":
        return np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype)
    if name == "gelu":
        return 0.5 * special.erfc(-z / math.sqrt(2)) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    if name == "gelu_tanh":
        k = math.sqrt(2 / math.pi)
        t = np.tanh(k * (z + 0.044715 * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z)
    if name == "silu":
        s = special.expit(z)
        return s * (1 + z * special.expit(-z))
    raise NotImplementedError(name)


def output_delta(loss, ZL, AL, Y, d_act):
    """Column form: ZL, AL are (D, B); returns (C, dC/dZL)."""
    D, B = AL.shape
    if loss in ("sse", "half_sse", "mse", "quadratic"):
        R = AL - Y
        c = {"sse": 1.0, "half_sse": 0.5, "mse": 1 / (B * D), "quadratic": 1 / (2 * B)}[loss]
        return c * np.sum(R * R), 2 * c * R * d_act
    if loss in ("binary_cross_entropy", "bce_with_logits"):
        C = np.sum(Y * np.logaddexp(0, -ZL) + (1 - Y) * np.logaddexp(0, ZL)) / (B * D)
        return C, (special.expit(ZL) - Y) / (B * D)
    if loss == "softmax_cross_entropy":
        S = ZL - ZL.max(axis=0)  # one column per example
        E = np.exp(S)
        tot = E.sum(axis=0)
        cols = np.arange(B)
        C = np.sum(np.log(tot) - S[Y, cols]) / B
        G = E / tot
        G[Y, cols] -= 1
        return C, G / B
    raise NotImplementedError(loss)


def backprop(spec, params, x, y):
    """Tutorial (column) form inside: a^l = f(W^l a^{l-1} + b^l), one column per example."""
    dtype = np.dtype(spec["dtype"])
    L = len(spec["layers"])
    names = [layer["activation"] for layer in spec["layers"]]
    W = [np.asarray(params[f"layers.{l}.W"], dtype) for l in range(L)]
    b = [np.asarray(params[f"layers.{l}.b"], dtype)[:, None] for l in range(L)]
    A = [np.asarray(x, dtype).T]  # A[0] = input, A[l + 1] = output of layer l
    Z = []
    for l in range(L):
        Z.append(W[l] @ A[-1] + b[l])
        A.append(act(names[l], Z[-1]))
    Y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype).T

    C, Dl = output_delta(spec["loss"], Z[-1], A[-1], Y, act_prime(names[-1], Z[-1]))
    grads, deltas = {}, {}
    for l in range(L - 1, -1, -1):
        if l < L - 1:
            Dl = (W[l].T @ Dl) * act_prime(names[l], Z[l])  # BP2
        deltas[f"layers.{l}"] = Dl.T
        grads[f"layers.{l}.W"] = Dl @ A[l].T  # BP4: sum over examples of delta a^T
        grads[f"layers.{l}.b"] = Dl.sum(axis=1)  # BP3
    return {"loss": float(C), "grads": grads, "input_grad": (W[0].T @ Dl).T, "deltas": deltas,
            "activations": {f"layers.{l}": A[l + 1].T for l in range(L)},
            "pre_activations": {f"layers.{l}": Z[l].T for l in range(L)}}
