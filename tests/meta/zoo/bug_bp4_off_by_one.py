"""MLP backprop with Nielsen's 1-based layer lists (a[0] = x) whose BP4 uses a[l], the layer's own
output, instead of a[l-1], its input. Non-square layers reply with the wrong shape (an adapter
error); square layers silently get wrong values.
"""
import math

import numpy as np
from scipy.special import erfc, expit

EXPECTED = {
    "verdict": "fail",
    "class": "bug",
    "first_wrong": "W",
    "equation": "BP4",
    "family": "square",
    "shows_when": "a square layer (units == fan_in) gives wrong values; other shapes are rejected",
}

INV_SQRT2PI = 1 / math.sqrt(2 * math.pi)
KAPPA = math.sqrt(2 / math.pi)


def Phi(z):
    return 0.5 * erfc(-z * math.sqrt(0.5))


def _gt_inner(z):
    return KAPPA * (z + 0.044715 * z**3)


F = {
    "identity": lambda z: z,
    "relu": lambda z: np.where(z > 0, z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "sigmoid": expit,
    "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(z, 0),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "gelu": lambda z: z * Phi(z),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(_gt_inner(z))),
    "silu": lambda z: z * expit(z),
}
DF = {
    "identity": lambda z: np.ones_like(z),
    "relu": lambda z: np.where(z > 0, 1, 0).astype(z.dtype),
    "leaky_relu": lambda z: np.where(z > 0, 1, 0.01).astype(z.dtype),
    "sigmoid": lambda z: expit(z) * expit(-z),
    "tanh": lambda z: 1 - np.tanh(z) ** 2,
    "softplus": expit,
    "elu": lambda z: np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype),
    "gelu": lambda z: Phi(z) + z * np.exp(-0.5 * z * z) * INV_SQRT2PI,
    "gelu_tanh": lambda z: (0.5 * (1 + np.tanh(_gt_inner(z)))
                            + 0.5 * z * (1 - np.tanh(_gt_inner(z)) ** 2) * KAPPA * (1 + 0.134145 * z * z)),
    "silu": lambda z: expit(z) * (1 + z * expit(-z)),
}


def cost(kind, zL, aL, y):
    """(C, delta_L): the cost and its gradient with respect to the last pre-activation."""
    B, D = aL.shape
    if kind in ("sse", "half_sse", "mse", "quadratic"):
        k = {"sse": 1.0, "half_sse": 0.5, "mse": 1.0 / (B * D), "quadratic": 1.0 / (2 * B)}[kind]
        diff = aL - y
        return k * np.sum(diff**2), (2 * k) * diff, True  # True: still to multiply by f'(zL)
    if kind in ("binary_cross_entropy", "bce_with_logits"):
        C = np.sum(y * np.logaddexp(0, -zL) + (1 - y) * np.logaddexp(0, zL)) / (B * D)
        return C, (expit(zL) - y) / (B * D), False
    if kind == "softmax_cross_entropy":
        zmax = zL.max(axis=1, keepdims=True)
        e = np.exp(zL - zmax)
        total = e.sum(axis=1, keepdims=True)
        logZ = zmax + np.log(total)
        prob = e / total
        picked = zL[np.arange(B), y]
        prob[np.arange(B), y] -= 1
        return np.sum(logZ[:, 0] - picked) / B, prob / B, False
    raise NotImplementedError(kind)


def backprop(spec, params, x, y):
    """Nielsen's indexing: layer l = 1..L, a[0] = x, z[l] = a[l-1] W[l]^T + b[l] (rows = examples)."""
    dt = np.dtype(spec["dtype"])
    L = len(spec["layers"])
    fs = [None] + [layer["activation"] for layer in spec["layers"]]
    if any(f not in F for f in fs[1:]):
        raise NotImplementedError("activation")
    W = [None] + [np.asarray(params[f"layers.{l - 1}.W"], dt) for l in range(1, L + 1)]
    b = [None] + [np.asarray(params[f"layers.{l - 1}.b"], dt) for l in range(1, L + 1)]
    a = [np.asarray(x, dt)]
    z = [None]
    for l in range(1, L + 1):
        z.append(a[l - 1] @ W[l].T + b[l])
        a.append(F[fs[l]](z[l]))
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dt)

    C, delta, times_fprime = cost(spec["loss"], z[L], a[L], y)
    if times_fprime:
        delta = delta * DF[fs[L]](z[L])  # BP1
    nabla_w, nabla_b, deltas = [None] * (L + 1), [None] * (L + 1), [None] * (L + 1)
    for l in range(L, 0, -1):
        if l < L:
            delta = (delta @ W[l + 1]) * DF[fs[l]](z[l])  # BP2
        deltas[l] = delta
        nabla_b[l] = delta.sum(axis=0)  # BP3
        nabla_w[l] = np.einsum("bj,bk->jk", delta, a[l])  # BP4
    key = [f"layers.{l - 1}" for l in range(L + 1)]
    grads = {}
    for l in range(1, L + 1):
        grads[key[l] + ".W"], grads[key[l] + ".b"] = nabla_w[l], nabla_b[l]
    return {"loss": float(C), "grads": grads, "input_grad": deltas[1] @ W[1],
            "deltas": {key[l]: deltas[l] for l in range(1, L + 1)},
            "activations": {key[l]: a[l] for l in range(1, L + 1)},
            "pre_activations": {key[l]: z[l] for l in range(1, L + 1)}}
