"""Correct: a scalar reverse-mode autodiff in the style of micrograd -- every number is a Value
node that remembers its parents and its local derivatives, and backward() applies the chain rule
over a topological order. Each scalar is a NumPy scalar of the case dtype, so the arithmetic stays
in float32 or float64; the network and losses are built from these nodes, not from BP1-BP4.
"""
import math

import numpy as np
from scipy.special import erfc

EXPECTED = {
    "verdict": "pass",
    "class": None,
    "first_wrong": None,
    "equation": None,
    "family": None,
    "shows_when": None,
}


class Value:
    __slots__ = ("data", "grad", "parents", "local")

    def __init__(self, data, parents=(), local=()):
        self.data, self.grad = data, data * 0
        self.parents, self.local = parents, local  # local[k] = d self / d parents[k]

    def __add__(self, other):
        return Value(self.data + other.data, (self, other), (1, 1))

    def __sub__(self, other):
        return Value(self.data - other.data, (self, other), (1, -1))

    def __mul__(self, other):
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def scale(self, k):
        return Value(self.data * k, (self,), (k,))

    def exp(self):
        e = np.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(np.log(self.data), (self,), (1 / self.data,))

    def apply(self, f, df):
        return Value(f(self.data), (self,), (df(self.data),))

    def backward(self):
        order, seen = [], set()

        def visit(node):  # depth-first topological sort, as in micrograd
            seen.add(node)
            for parent in node.parents:
                if parent not in seen:
                    visit(parent)
            order.append(node)

        visit(self)
        self.grad = self.data * 0 + 1
        for node in reversed(order):
            for parent, d in zip(node.parents, node.local):
                parent.grad = parent.grad + d * node.grad


def linear(ws, xs, b):
    """b + sum_j w_j x_j as one node: local derivatives x_j for w_j, w_j for x_j, 1 for b."""
    s = b.data
    for w, x in zip(ws, xs):
        s = s + w.data * x.data
    return Value(s, (*ws, *xs, b), (*(x.data for x in xs), *(w.data for w in ws), 1))


def sig(z):
    e = np.exp(-abs(z))
    return 1 / (1 + e) if z >= 0 else e / (1 + e)


def softplus(z):
    return max(z, 0 * z) + np.log1p(np.exp(-abs(z)))


K, C, S2, S2PI = math.sqrt(2 / math.pi), 0.044715, math.sqrt(2), math.sqrt(2 * math.pi)


def d_gelu_tanh(z):
    t = np.tanh(K * (z + C * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * K * (1 + 3 * C * z * z)


RULES = {  # name -> (f, f') on one scalar of the case dtype
    "identity": (lambda z: z, lambda z: z * 0 + 1),
    "relu": (lambda z: z if z > 0 else z * 0, lambda z: z * 0 + (1 if z > 0 else 0)),
    "leaky_relu": (lambda z: z if z > 0 else 0.01 * z, lambda z: z * 0 + (1 if z > 0 else 0.01)),
    "sigmoid": (sig, lambda z: sig(z) * sig(-z)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "softplus": (softplus, sig),
    "elu": (lambda z: z if z > 0 else np.expm1(z), lambda z: z * 0 + 1 if z > 0 else np.exp(z)),
    "gelu": (lambda z: z * 0.5 * erfc(-z / S2),
             lambda z: 0.5 * erfc(-z / S2) + z * np.exp(-z * z / 2) / S2PI),
    "gelu_tanh": (lambda z: 0.5 * z * (1 + np.tanh(K * (z + C * z**3))), d_gelu_tanh),
    "silu": (lambda z: z * sig(z), lambda z: sig(z) * (1 + z * sig(-z))),
}
LOG_SIGMOID = (lambda z: -softplus(-z), lambda z: sig(-z))


def total(nodes):
    """The sum of many nodes as one node (keeps the graph shallow)."""
    s = nodes[0].data
    for node in nodes[1:]:
        s = s + node.data
    return Value(s, tuple(nodes), (1,) * len(nodes))


def backprop(spec, params, x, y):
    T = np.dtype(spec["dtype"]).type
    L, loss_name = len(spec["layers"]), spec["loss"]
    if any(layer["activation"] not in RULES for layer in spec["layers"]):
        raise NotImplementedError("activation")
    P = {k: [[Value(T(v)) for v in row] for row in np.atleast_2d(np.asarray(a, T))] for k, a in params.items()}
    X = [[Value(T(v)) for v in row] for row in np.asarray(x, T)]
    zs, acts, rows = [], [], X
    for i, layer in enumerate(spec["layers"]):
        W, b = P[f"layers.{i}.W"], P[f"layers.{i}.b"][0]
        f, df = RULES[layer["activation"]]
        z = [[linear(W[j], row, b[j]) for j in range(len(W))] for row in rows]
        rows = [[v.apply(f, df) for v in zrow] for zrow in z]
        zs.append(z)
        acts.append(rows)

    B, D = len(X), len(rows[0])
    terms = []
    if loss_name in ("sse", "half_sse", "mse", "quadratic"):
        k = {"sse": 1.0, "half_sse": 0.5, "mse": 1 / (B * D), "quadratic": 1 / (2 * B)}[loss_name]
        Y = np.asarray(y, T)
        for row, yrow in zip(rows, Y):
            for a, t in zip(row, yrow):
                r = a - Value(t)
                terms.append(r * r)
        loss = total(terms).scale(T(k))
    elif loss_name in ("binary_cross_entropy", "bce_with_logits"):  # from the logits z
        Y = np.asarray(y, T)
        for zrow, yrow in zip(zs[-1], Y):
            for z, t in zip(zrow, yrow):
                pos, neg = z.apply(*LOG_SIGMOID), z.scale(T(-1)).apply(*LOG_SIGMOID)
                terms.append(pos.scale(t) + neg.scale(1 - t))
        loss = total(terms).scale(T(-1) / (B * D))
    elif loss_name == "softmax_cross_entropy":
        for zrow, label in zip(zs[-1], np.asarray(y)):
            m = Value(max(v.data for v in zrow))  # a constant: the result does not depend on it
            lse = m + total([(v - m).exp() for v in zrow]).log()
            terms.append(lse - zrow[int(label)])
        loss = total(terms).scale(T(1) / B)
    else:
        raise NotImplementedError(loss_name)
    loss.backward()

    grid = lambda nodes, attr: np.array([[getattr(v, attr) for v in row] for row in nodes], T)  # noqa: E731
    out = {"loss": float(loss.data), "grads": {}, "input_grad": grid(X, "grad"),
           "deltas": {}, "activations": {}, "pre_activations": {}}
    for i in range(L):
        out["grads"][f"layers.{i}.W"] = grid(P[f"layers.{i}.W"], "grad")
        out["grads"][f"layers.{i}.b"] = grid(P[f"layers.{i}.b"], "grad")[0]
        out["deltas"][f"layers.{i}"] = grid(zs[i], "grad")
        out["activations"][f"layers.{i}"] = grid(acts[i], "data")
        out["pre_activations"][f"layers.{i}"] = grid(zs[i], "data")
    return out
