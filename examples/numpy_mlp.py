"""A plain NumPy multilayer perceptron with hand-written backprop -- correct.

What it is: a *third-party* implementation of bpcheck's Python contract, written
without looking at bpcheck's ``reference/`` (and importing nothing from it), the
way someone would write their own:

    backprop(spec, params, x, y) -> {"loss", "grads", "input_grad", "deltas", ...}

Check it with ``bpcheck validate examples/numpy_mlp.py:backprop`` (exit 0).

Forward, batch-major (B rows): z_i = a_{i-1} @ W_i.T + b_i, a_i = f_i(z_i), a_{-1} = x.
Backward: the output delta dC/dz_L is *fused* with the loss where that is the
stable form (softmax - onehot, sigmoid(z) - y), and both cross-entropies are
computed from the logits (-log sigmoid(z) = softplus(-z)). Hidden deltas are
delta_i = (delta_{i+1} @ W_{i+1}) * f_i'(z_i); dC/db_i sums delta_i over the
batch and dC/dW_i = delta_i.T @ a_{i-1}. Matrix products, sums and the loss run
in ``spec["dtype"]`` (constants are Python numbers, which NumPy 2 never promotes
a float32 array with); the elementwise f and f' are evaluated in float64 and
rounded once, like a correctly rounded math library.
"""
import math

import numpy as np

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(z):
    e = np.exp(-np.abs(z))                      # never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sech2(u):
    """1 - tanh(u)^2 as 4e / (1 + e)^2, e = exp(-2|u|): no cancellation where tanh saturates."""
    e = np.exp(-2 * np.abs(u))
    return 4 * e / (1 + e) ** 2


def _phi(z):
    """The normal CDF as erfc(-z / sqrt 2) / 2: no cancellation in the left tail, unlike (1 + erf) / 2."""
    return 0.5 * _erfc(-z / math.sqrt(2))


def _gelu_tanh_grad(z):
    k, c = math.sqrt(2 / math.pi), 0.044715
    inner = k * (z + c * z**3)
    return 0.5 * (1 + np.tanh(inner)) + 0.5 * z * _sech2(inner) * k * (1 + 3 * c * z * z)


# name -> (f(z), f'(z)) of the pre-activation z, written for float64 arrays
_FORMULAS = {
    "identity": (lambda z: z, np.ones_like),
    "relu": (lambda z: np.where(z > 0, z, 0.0), lambda z: np.where(z > 0, 1.0, 0.0)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1.0, 0.01)),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * _sigmoid(-z)),
    "tanh": (np.tanh, _sech2),
    "softplus": (_softplus, _sigmoid),
    "elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
            lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))),
    "gelu": (lambda z: z * _phi(z), lambda z: _phi(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (lambda z: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
                  _gelu_tanh_grad),
    "silu": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1 + z * _sigmoid(-z))),
}


def _rounded(f):
    """f evaluated in float64 and rounded once to z's dtype, as a correctly rounded libm would.
    (f' has zeros -- gelu' near z = -0.75, silu' near -1.28 -- where float32 steps would cancel.)"""
    return lambda z: f(np.asarray(z, np.float64)).astype(z.dtype)


ACTIVATIONS = {name: (_rounded(f), _rounded(df)) for name, (f, df) in _FORMULAS.items()}


def forward(spec, params, x):
    """Pre-activations and activations of every layer."""
    zs, acts, a = [], [], x
    for i, layer in enumerate(spec["layers"]):
        z = a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"]
        a = ACTIVATIONS[layer["activation"]][0](z)
        zs.append(z)
        acts.append(a)
    return zs, acts


def loss_and_output_delta(spec, z, a, y):
    """The loss C and dC/dz of the last layer."""
    name, n, batch = spec["loss"], a.size, a.shape[0]
    d_act = ACTIVATIONS[spec["layers"][-1]["activation"]][1]
    if name in ("sse", "half_sse", "mse", "quadratic"):
        r = a - y
        scale = {"sse": 1, "half_sse": 0.5, "mse": 1 / n, "quadratic": 1 / (2 * batch)}[name]
        return scale * np.sum(r * r), 2 * scale * r * d_act(z)
    if name == "binary_cross_entropy":          # a = sigmoid(z): -log a = softplus(-z), -log(1-a) = softplus(z)
        return np.sum(y * _softplus(-z) + (1 - y) * _softplus(z)) / n, (a - y) / n
    if name == "bce_with_logits":               # a = z
        return np.sum(y * _softplus(-z) + (1 - y) * _softplus(z)) / n, (_sigmoid(z) - y) / n
    if name == "softmax_cross_entropy":         # a = z, y holds classes
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        rows = np.arange(batch)
        delta = np.exp(log_p)
        delta[rows, y] -= 1
        return -np.sum(log_p[rows, y]) / batch, delta / batch
    raise NotImplementedError(f"loss {name!r}")


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    for layer in spec["layers"]:
        if layer["activation"] not in ACTIVATIONS:
            raise NotImplementedError(f"activation {layer['activation']!r}")
    params = {k: np.asarray(v, dtype) for k, v in params.items()}
    x = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
    zs, acts = forward(spec, params, x)
    loss, delta = loss_and_output_delta(spec, zs[-1], acts[-1], y)
    grads, deltas = {}, {}
    for i in reversed(range(len(spec["layers"]))):
        deltas[f"layers.{i}"] = delta
        a_prev = acts[i - 1] if i > 0 else x
        grads[f"layers.{i}.W"] = delta.T @ a_prev
        grads[f"layers.{i}.b"] = delta.sum(axis=0)
        delta = delta @ params[f"layers.{i}.W"]          # dC/da_{i-1}, or dC/dx when i = 0
        if i > 0:
            delta = delta * ACTIVATIONS[spec["layers"][i - 1]["activation"]][1](zs[i - 1])
    names = [f"layers.{i}" for i in range(len(zs))]
    return {"loss": float(loss), "grads": grads, "input_grad": delta, "deltas": deltas,
            "pre_activations": dict(zip(names, zs)), "activations": dict(zip(names, acts))}
