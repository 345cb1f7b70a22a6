"""Correct: the textbook network (ok_textbook.py) with softmax cross-entropy through the log-sum-exp
formed first, log p = z - (max z + log sum e^(z - max z)) and p = e^(log p), as
``z - scipy.special.logsumexp(z)`` computes it. Where the logits are large (|z| ~ 700) the exponent
z - lse rounds by u |z| absolutely, so p and the loss are off by ~700 u relatively: the rounding of a
correct formula, which the tolerance grants.
"""
import math

import numpy as np
from scipy.special import erf

EXPECTED = {
    "verdict": "pass",
    "class": None,
    "first_wrong": None,
    "equation": None,
    "family": None,
    "shows_when": None,
}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def Phi(z):
    return 0.5 * (1 + erf(z / math.sqrt(2)))


def gelu_tanh_inner(z):
    return math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)


ACTIVATIONS = {
    "identity": (lambda z: z, lambda z: np.ones_like(z)),
    "relu": (lambda z: np.maximum(0, z), lambda z: (z > 0).astype(z.dtype)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1, 0.01).astype(z.dtype)),
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * (1 - sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "softplus": (lambda z: np.log(1 + np.exp(z)), sigmoid),
    "elu": (lambda z: np.where(z > 0, z, np.exp(z) - 1), lambda z: np.where(z > 0, 1, np.exp(z)).astype(z.dtype)),
    "gelu": (lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2))),
             lambda z: Phi(z) + z * np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (lambda z: 0.5 * z * (1 + np.tanh(gelu_tanh_inner(z))),
                  lambda z: (0.5 * (1 + np.tanh(gelu_tanh_inner(z)))
                             + 0.5 * z * (1 - np.tanh(gelu_tanh_inner(z)) ** 2)
                             * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * z**2))),
    "silu": (lambda z: z * sigmoid(z), lambda z: sigmoid(z) * (1 + z * (1 - sigmoid(z)))),
}


def loss_and_gradient(name, a, y):
    """C and dC/da; for the two logits losses a is the logits z (identity last layer)."""
    n, B = a.size, a.shape[0]
    if name == "sse":
        return np.sum((a - y) ** 2), 2 * (a - y)
    if name == "half_sse":
        return 0.5 * np.sum((a - y) ** 2), a - y
    if name == "mse":
        return np.mean((a - y) ** 2), 2 * (a - y) / n
    if name == "quadratic":
        return np.sum((a - y) ** 2) / (2 * B), (a - y) / B
    if name == "binary_cross_entropy":
        return -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a)), (a - y) / (a * (1 - a)) / n
    if name == "bce_with_logits":
        return np.mean(np.log1p(np.exp(-np.abs(a))) + np.maximum(a, 0) - a * y), (sigmoid(a) - y) / n
    if name == "softmax_cross_entropy":
        shifted = a - a.max(axis=1, keepdims=True)
        m = a.max(axis=1, keepdims=True)
        log_softmax = a - (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))
        onehot = np.eye(a.shape[1], dtype=a.dtype)[y]
        return -np.mean(log_softmax[np.arange(B), y]), (np.exp(log_softmax) - onehot) / B
    raise NotImplementedError(name)


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    layers = spec["layers"]
    for layer in layers:
        if layer["activation"] not in ACTIVATIONS:
            raise NotImplementedError(layer["activation"])
    params = {k: np.asarray(v, dtype) for k, v in params.items()}
    x = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
    with np.errstate(all="ignore"):  # the plain formulas overflow where the dtype ends
        zs, activations, a = [], [], x
        for i, layer in enumerate(layers):
            z = a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"]
            a = ACTIVATIONS[layer["activation"]][0](z)
            zs.append(z)
            activations.append(a)
        loss, grad_a = loss_and_gradient(spec["loss"], activations[-1], y)
        grads, deltas = {}, {}
        delta = grad_a * ACTIVATIONS[layers[-1]["activation"]][1](zs[-1])  # BP1
        for i in range(len(layers) - 1, -1, -1):
            if i < len(layers) - 1:
                delta = (delta @ params[f"layers.{i + 1}.W"]) * ACTIVATIONS[layers[i]["activation"]][1](zs[i])  # BP2
            deltas[f"layers.{i}"] = delta
            grads[f"layers.{i}.b"] = delta.sum(axis=0)  # BP3
            grads[f"layers.{i}.W"] = delta.T @ (activations[i - 1] if i > 0 else x)  # BP4
        input_grad = delta @ params["layers.0.W"]
    names = [f"layers.{i}" for i in range(len(layers))]
    return {"loss": float(loss), "grads": grads, "input_grad": input_grad, "deltas": deltas,
            "activations": dict(zip(names, activations)), "pre_activations": dict(zip(names, zs))}
