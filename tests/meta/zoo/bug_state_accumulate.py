"""Layer-object MLP backprop that accumulates parameter gradients into persistent per-layer buffers
and never zeroes them (the "forgot optimizer.zero_grad()" report): the first call is right, every
later call with the same shapes returns the sum over all calls so far.
"""
import math

import numpy as np
from scipy.special import erfc

EXPECTED = {
    "verdict": "fail",
    "class": "bug",
    "first_wrong": "b",
    "equation": "BP3",
    "family": "plain",
    "shows_when": "any call after the first with the same layer shapes and dtype",
}

SQRT2, SQRT2PI = math.sqrt(2.0), math.sqrt(2.0 * math.pi)
K, C = math.sqrt(2.0 / math.pi), 0.044715


def _sig(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


FORWARD = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "sigmoid": _sig,
    "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(0, z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "gelu": lambda z: 0.5 * z * erfc(-z / SQRT2),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(K * (z + C * z**3))),
    "silu": lambda z: z * _sig(z),
}


def _gelu_tanh_back(g, z, a):
    t = np.tanh(K * (z + C * z**3))
    return g * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * K * (1 + 3 * C * z * z))


# local chain rule of each activation: upstream g = dC/da  ->  dC/dz, given z and a = f(z)
BACKWARD = {
    "identity": lambda g, z, a: g,
    "relu": lambda g, z, a: g * (z > 0),
    "leaky_relu": lambda g, z, a: g * np.where(z > 0, 1, 0.01).astype(z.dtype),
    "sigmoid": lambda g, z, a: g * _sig(z) * _sig(-z),
    "tanh": lambda g, z, a: g * (1 - a * a),
    "softplus": lambda g, z, a: g * _sig(z),
    "elu": lambda g, z, a: g * np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype),
    "gelu": lambda g, z, a: g * (0.5 * erfc(-z / SQRT2) + z * np.exp(-0.5 * z * z) / SQRT2PI),
    "gelu_tanh": _gelu_tanh_back,
    "silu": lambda g, z, a: g * _sig(z) * (1 + z * _sig(-z)),
}


_GRAD_BUFFERS = {}  # (name, shape, dtype) -> accumulated gradient


class Dense:
    def __init__(self, W, b, activation):
        self.W, self.b, self.activation = W, b, activation

    def forward(self, a_prev):
        self.a_prev = a_prev
        self.z = a_prev @ self.W.T + self.b
        self.a = FORWARD[self.activation](self.z)
        return self.a

    def backward(self, grad_a, fused_delta=None):
        """grad_a = dC/da of this layer's output; returns dC/d(a_prev)."""
        self.delta = fused_delta if fused_delta is not None else BACKWARD[self.activation](grad_a, self.z, self.a)
        self.dW = self.delta.T @ self.a_prev
        self.db = self.delta.sum(axis=0)
        return self.delta @ self.W


def loss_head(name, z, a, y):
    """Returns (loss, dC/da, fused dC/dz or None) for the last layer's z and a."""
    n, batch = a.size, a.shape[0]
    if name in ("sse", "half_sse", "mse", "quadratic"):
        scale = {"sse": 1.0, "half_sse": 0.5, "mse": 1 / n, "quadratic": 1 / (2 * batch)}[name]
        r = a - y
        return scale * np.sum(r * r), 2 * scale * r, None
    if name in ("binary_cross_entropy", "bce_with_logits"):  # sigmoid/identity last: use the logits
        loss = np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / n
        return loss, None, (_sig(z) - y) / n
    if name == "softmax_cross_entropy":
        s = z - z.max(axis=1, keepdims=True)
        log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        rows = np.arange(batch)
        p = np.exp(log_p)
        p[rows, y] -= 1
        return -np.sum(log_p[rows, y]) / batch, None, p / batch
    raise NotImplementedError(name)


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    for layer in spec["layers"]:
        if layer["activation"] not in FORWARD:
            raise NotImplementedError(layer["activation"])
    net = [Dense(np.asarray(params[f"layers.{i}.W"], dtype), np.asarray(params[f"layers.{i}.b"], dtype),
                 layer["activation"]) for i, layer in enumerate(spec["layers"])]
    a = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
    for layer in net:
        a = layer.forward(a)
    loss, grad, fused = loss_head(spec["loss"], net[-1].z, a, y)
    grad = net[-1].backward(grad, fused)
    for layer in reversed(net[:-1]):
        grad = layer.backward(grad)

    out = {"loss": float(loss), "grads": {}, "input_grad": grad,
           "deltas": {}, "activations": {}, "pre_activations": {}}
    for i, layer in enumerate(net):
        for name, g in ((f"layers.{i}.W", layer.dW), (f"layers.{i}.b", layer.db)):
            buf = _GRAD_BUFFERS.setdefault((name, g.shape, g.dtype.str), np.zeros_like(g))
            buf += g
            out["grads"][name] = buf
        out["deltas"][f"layers.{i}"] = layer.delta
        out["activations"][f"layers.{i}"] = layer.a
        out["pre_activations"][f"layers.{i}"] = layer.z
    return out
