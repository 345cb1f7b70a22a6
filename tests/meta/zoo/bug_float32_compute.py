"""Hand-written MLP backprop that does all its arithmetic in float32 ("float32 is plenty for
gradients", a GPU habit) and casts the results back, so a float64 request gets float32 accuracy.
The formulas are right; float32 cases are unaffected.
"""
import math

import numpy as np
from scipy.special import erfc

EXPECTED = {
    "verdict": "fail",
    "class": "bug",
    "first_wrong": "activation",
    "equation": "forward",
    "family": "plain",
    "shows_when": ("every float64 case: relative error ~1e-7 (class precision); past float32's exp range "
                   "(the exp_overflow families' z of 700-760) 0 or inf, class bug -- the diagnosis shows "
                   "a bug before a precision loss"),
}


def sigmoid(z):
    e = np.exp(-np.abs(z))  # e <= 1: no overflow on either side
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softplus(z):
    return np.logaddexp(0, z)


def normal_cdf(z):
    return 0.5 * erfc(-z / math.sqrt(2))


GELU_K, GELU_C = math.sqrt(2 / math.pi), 0.044715


def gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(GELU_K * (z + GELU_C * z**3)))


def d_gelu_tanh(z):
    t = np.tanh(GELU_K * (z + GELU_C * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_K * (1 + 3 * GELU_C * z * z)


# name -> (f, f'), both taking the pre-activation z
ACTIVATIONS = {
    "identity": (lambda z: z, np.ones_like),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z),
                   lambda z: np.where(z > 0, 1, 0.01).astype(z.dtype)),
    "sigmoid": (sigmoid, lambda z: sigmoid(z) * sigmoid(-z)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "softplus": (softplus, sigmoid),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda z: np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype)),
    "gelu": (lambda z: z * normal_cdf(z),
             lambda z: normal_cdf(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (gelu_tanh, d_gelu_tanh),
    "silu": (lambda z: z * sigmoid(z), lambda z: sigmoid(z) * (1 + z * sigmoid(-z))),
}

# squared losses: C = scale * sum (a - y)^2, scale from (batch, number of entries)
SQUARED = {
    "sse": lambda batch, n: 1.0,
    "half_sse": lambda batch, n: 0.5,
    "mse": lambda batch, n: 1 / n,
    "quadratic": lambda batch, n: 1 / (2 * batch),
}
LOSSES = set(SQUARED) | {"binary_cross_entropy", "bce_with_logits", "softmax_cross_entropy"}


def loss_and_output_delta(spec, z, a, y):
    """The loss C and delta_L = dC/dz_L of the last layer (BP1)."""
    name, n, batch = spec["loss"], a.size, a.shape[0]
    d_act = ACTIVATIONS[spec["layers"][-1]["activation"]][1]
    if name in SQUARED:
        r = a - y
        scale = SQUARED[name](batch, n)
        return scale * np.sum(r * r), 2 * scale * r * d_act(z)
    if name in ("binary_cross_entropy", "bce_with_logits"):
        # both read from the logits z: -log sigmoid(z) = softplus(-z), -log(1 - sigmoid(z)) = softplus(z)
        loss = np.sum(y * softplus(-z) + (1 - y) * softplus(z)) / n
        return loss, (sigmoid(z) - y) / n
    rows = np.arange(batch)  # softmax_cross_entropy; y holds class indices
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    loss = np.sum(np.log(total[:, 0]) - shifted[rows, y]) / batch
    g = e / total
    g[rows, y] -= 1
    return loss, g / batch


def backprop(spec, params, x, y):
    out_dtype = np.dtype(spec["dtype"])
    dtype = np.dtype(np.float32)  # compute in single precision, return what was asked for
    layers = spec["layers"]
    if spec["loss"] not in LOSSES:
        raise NotImplementedError(spec["loss"])
    for layer in layers:
        if layer["activation"] not in ACTIVATIONS:
            raise NotImplementedError(layer["activation"])
    W = [np.asarray(params[f"layers.{i}.W"], dtype) for i in range(len(layers))]
    b = [np.asarray(params[f"layers.{i}.b"], dtype) for i in range(len(layers))]
    x = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)

    zs, acts, a = [], [], x
    for i, layer in enumerate(layers):
        z = a @ W[i].T + b[i]
        a = ACTIVATIONS[layer["activation"]][0](z)
        zs.append(z)
        acts.append(a)

    loss, delta = loss_and_output_delta(spec, zs[-1], acts[-1], y)
    grads, deltas = {}, {}
    for i in reversed(range(len(layers))):
        if i < len(layers) - 1:
            delta = (delta @ W[i + 1]) * ACTIVATIONS[layers[i]["activation"]][1](zs[i])  # BP2
        a_prev = acts[i - 1] if i > 0 else x
        deltas[f"layers.{i}"] = delta
        grads[f"layers.{i}.b"] = delta.sum(axis=0)  # BP3
        grads[f"layers.{i}.W"] = delta.T @ a_prev  # BP4
    input_grad = delta @ W[0]

    names = [f"layers.{i}" for i in range(len(layers))]
    cast = lambda d: {k: v.astype(out_dtype) for k, v in d.items()}  # noqa: E731
    return {"loss": float(loss), "grads": cast(grads), "input_grad": input_grad.astype(out_dtype),
            "deltas": cast(deltas), "activations": cast(dict(zip(names, acts))),
            "pre_activations": cast(dict(zip(names, zs)))}
