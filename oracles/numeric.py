"""The high-precision arbiter: the contract's network differentiated in mpmath.

What it is: a tiny array-level reverse-mode autodiff (micrograd style, but each
node holds a whole NumPy *object* array of mpmath ``mpf``). Four vectorised ops
-- matmul, add bias, elementwise activation, loss reduction -- each carry their
local derivative rule beside their forward; ``backward`` walks the tape in
reverse and applies the chain rule. Inputs (float32 or float64) are taken at
their exact binary values, every operation is done at ``dps`` significant
digits (matmuls as exact integer dot products, each rounded once), and only the
results are rounded (once) to float64. Scalar formulas are written in
cancellation-free forms (sigma(-z) instead of 1 - sigma(z), log1p(sum exp(z_j -
z_y)) for softmax cross-entropy, erfc for the exact GELU). So every entry is
good to ~10^-dps relative to the size of the terms summed into it: to ~dps
digits, except an entry whose true value cancels to (near) zero, which gets an
absolute residue ~10^-dps times its terms' size. ``richardson_grad`` is a
float64 cross-check: central differences with Richardson extrapolation.

What it is not: fast (pure Python; ~450 cases/s for a 3-8-8-2 net, ~40 for six
layers of 16 at batch 8), thread-safe (it sets mpmath's global precision), or a
copy of the reference: it does not hand-derive the BP1-BP4 backprop equations
and imports neither ``reference``, ``bpcheck``, torch nor jax. It adopts no
framework convention: softplus has no cut-over, BCE's log is not clamped (its
1 - a comes from a sigmoid rounded to dps digits; when that cancels away half
of them, the whole case is redone at twice the digits), gelu is the exact erf
form, gelu_tanh the tanh form. At kinks: relu'(0) = 0, leaky_relu'(0) = 0.01, elu'(0) = 1.
"""
import numpy as np
from mpmath import mp, mpf

__all__ = ["backprop", "richardson_grad", "ACTIVATIONS", "LOSSES"]

# ---------------------------------------------------------------- scalar rules
# Each activation maps one mpf z to (f(z), f'(z)): forward and local derivative.


def _sig_pair(z):
    """(sigma(z), sigma(-z), e^-|z|): one exp, no cancellation."""
    e = mp.exp(-abs(z))
    p = 1 / (1 + e)
    return (p, e * p, e) if z >= 0 else (e * p, p, e)


def _sigmoid(z):
    p, q, _ = _sig_pair(z)
    return p, p * q                                  # sigma' = sigma(z) sigma(-z)


def _tanh(z):
    e = mp.exp(-2 * abs(z))
    t = (1 - e) / (1 + e)
    return (t if z >= 0 else -t), 4 * e / (1 + e) ** 2   # tanh' = sech^2


def _softplus(z):
    p, _, e = _sig_pair(z)
    return max(z, 0) + mp.log1p(e), p                # softplus' = sigma


def _elu(z):
    if z > 0:
        return z, mpf(1)
    return mp.expm1(z), mp.exp(z)                    # elu'(0) = exp(0) = 1


def _gelu(z):
    cdf = mp.erfc(-z / mp.sqrt(2)) / 2               # Phi(z) = (1 + erf(z/sqrt2)) / 2
    pdf = mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)
    return z * cdf, cdf + z * pdf


def _gelu_tanh(z):
    # 0.5 z (1 + tanh u) = z sigma(2u);  u = c (z + k z^3),  c = sqrt(2/pi)
    c, k = mp.sqrt(2 / mp.pi), mpf(44715) / 10**6
    u = c * (z + k * z**3)
    p, q, _ = _sig_pair(2 * u)
    return z * p, p + 2 * z * p * q * c * (1 + 3 * k * z * z)


def _silu(z):
    p, q, _ = _sig_pair(z)
    return z * p, p * (1 + z * q)                    # (z sigma)' = sigma (1 + z sigma(-z))


ACTIVATIONS = {name: np.frompyfunc(fn, 1, 2) for name, fn in {
    "identity": lambda z: (z, mpf(1)),
    "relu": lambda z: (z, mpf(1)) if z > 0 else (mpf(0), mpf(0)),       # relu'(0) = 0
    "leaky_relu": lambda z: (z, mpf(1)) if z > 0 else (z / 100, mpf(1) / 100),
    "sigmoid": _sigmoid, "tanh": _tanh, "softplus": _softplus, "elu": _elu,
    "gelu": _gelu, "gelu_tanh": _gelu_tanh, "silu": _silu}.items()}

# Each loss maps (a, y) to (scalar loss, dLoss/da), a of shape (B, D).


def _bce_logits_term(z, y):
    """softplus(z) - y z written as y softplus(-z) + (1-y) softplus(z); grad sigma(z) - y."""
    p, q, e = _sig_pair(z)
    l1p = mp.log1p(e)
    return y * (max(-z, 0) + l1p) + (1 - y) * (max(z, 0) + l1p), (1 - y) * p - y * q


_bce_logits = np.frompyfunc(_bce_logits_term, 2, 2)
_log = np.frompyfunc(mp.log, 1, 1)


def _squared(scale):                                 # loss = scale(B, D) * sum (a - y)^2
    def loss(a, y):
        d, s = a - y, scale(*a.shape)
        return s * (d * d).sum(), 2 * s * d
    return loss


class _MoreDigits(Exception):
    """A rule saw its own cancellation eat half the digits; backprop retries with 2x."""


def _binary_cross_entropy(a, y):
    n, na = a.size, 1 - a                            # 1 - a cancels when a = sigmoid(big z)
    if na.min() < mpf(10) ** (-mp.dps // 2):
        raise _MoreDigits
    return -(y * _log(a) + (1 - y) * _log(na)).sum() / n, (a - y) / (a * na) / n


def _bce_with_logits(z, y):
    terms, grads = _bce_logits(z, y)
    return terms.sum() / z.size, grads / z.size


def _softmax_cross_entropy(z, y):
    """Per row: log(sum_j e^{z_j}) - z_y = log1p(s), s = sum_{j != y} e^{z_j - z_y}."""
    B = z.shape[0]
    total, grad = mpf(0), np.empty(z.shape, dtype=object)
    for b, cls in enumerate(y):
        e = np.array([mp.exp(v - z[b, cls]) for v in z[b]], dtype=object)
        e[cls] = 0
        s = e.sum()
        total += mp.log1p(s)
        grad[b] = e / (1 + s)
        grad[b, cls] = -s / (1 + s)                  # softmax_y - 1, without cancellation
    return total / B, grad / B


LOSSES = {
    "sse": _squared(lambda B, D: mpf(1)),
    "half_sse": _squared(lambda B, D: mpf(1) / 2),
    "mse": _squared(lambda B, D: mpf(1) / (B * D)),
    "quadratic": _squared(lambda B, D: mpf(1) / (2 * B)),
    "binary_cross_entropy": _binary_cross_entropy,
    "bce_with_logits": _bce_with_logits,
    "softmax_cross_entropy": _softmax_cross_entropy,
}

# ------------------------------------------------------------------- the tape


class Node:
    """One array on the tape: its value, its gradient, how to push it back."""

    def __init__(self, value, tape, backward=lambda g: None):
        self.value, self.grad, self._backward = value, None, backward
        tape.append(self)

    def accumulate(self, g):
        self.grad = g if self.grad is None else self.grad + g


def _fixed(A):
    """A as exact integers times one power of two: A == ints * 2**e (None if inf/nan
    or if the entries span more than 2**16 binades)."""
    parts = [v._mpf_ for v in A.flat]                # (sign, mantissa, exponent, bits)
    if any(m == 0 and x for _, m, x, _ in parts):
        return None, 0
    e = min((x for _, m, x, _ in parts if m), default=0)
    if max(x + b for _, m, x, b in parts) - e > 1 << 16:
        return None, 0                               # absurd dynamic range: ints too big
    ints = [((-m if s else m) << (x - e)) if m else 0 for s, m, x, _ in parts]
    return np.array(ints, dtype=object).reshape(A.shape), e


def _dot(A, B):
    """A @ B with every entry an exact dot product rounded once (integer arithmetic),
    which is also 5-10x faster than a matmul of mpf objects."""
    (ia, ea), (ib, eb) = _fixed(A), _fixed(B)
    if ia is None or ib is None:
        return A @ B
    return _from_man_exp(ia @ ib, ea + eb)


_from_man_exp = np.frompyfunc(lambda n, e: mpf((n, e)), 2, 1)


def matmul_t(a, W, tape):                            # out = a @ W.T
    out = Node(_dot(a.value, W.value.T), tape)

    def backward(g):
        a.accumulate(_dot(g, W.value))
        W.accumulate(_dot(g.T, a.value))
    out._backward = backward
    return out


def add_bias(z, b, tape):                            # out = z + b (broadcast over batch)
    out = Node(z.value + b.value, tape)

    def backward(g):
        z.accumulate(g)
        b.accumulate(g.sum(axis=0))
    out._backward = backward
    return out


def activation(z, name, tape):                       # out = f(z), elementwise
    f, df = ACTIVATIONS[name](z.value)
    out = Node(f, tape, lambda g: z.accumulate(g * df))
    out.local_derivative = df
    return out


def loss(a, y, name, tape):                          # out = L(a, y), a scalar
    value, dL_da = LOSSES[name](a.value, y)
    return Node(value, tape, lambda g: a.accumulate(g * dL_da))


def backward(root, tape):
    """Reverse sweep: seed dRoot/dRoot = 1, then each node pushes its grad to its inputs."""
    root.grad = mpf(1)
    for node in reversed(tape):
        if node.grad is not None:
            node._backward(node.grad)


# ------------------------------------------------------------------ the oracle

_to_mpf = np.frompyfunc(mpf, 1, 1)
_to_float = np.frompyfunc(float, 1, 1)


def _exact(arr):
    """Object array of mpf holding the exact binary values (float32 -> float64 is exact)."""
    return _to_mpf(np.asarray(arr, dtype=np.float64))


def _f64(arr):
    return _to_float(arr).astype(np.float64)


def backprop(spec, params, x, y, *, dps=50):
    """Loss, gradients, input gradient and per-layer z, a, dLoss/dz at ``dps`` digits
    (more where a rule asks for them). Same contract as every backend (README, "Conventions");
    all arrays are returned as float64."""
    for layer in spec["layers"]:
        if layer["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {layer['activation']!r}")
    if spec["loss"] not in LOSSES:
        raise ValueError(f"unknown loss {spec['loss']!r}")
    with mp.workprec(max(mp.prec, 64)):              # exact conversion of the inputs
        x_m = _exact(x)
        y_m = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else _exact(y)
        p_m = {k: _exact(v) for k, v in params.items()}
    while True:
        try:
            with mp.workdps(dps):
                return _run(spec, p_m, x_m, y_m)
        except _MoreDigits:
            if dps >= 10_000:
                raise ArithmeticError(f"{spec['loss']}: cancellation beyond {dps} digits") from None
            dps *= 2


def _run(spec, p_m, x_m, y_m):
    tape = []
    a = x_node = Node(x_m, tape)
    leaves, zs, acts = {}, [], []
    for i, layer in enumerate(spec["layers"]):
        W = leaves[f"layers.{i}.W"] = Node(p_m[f"layers.{i}.W"], tape)
        b = leaves[f"layers.{i}.b"] = Node(p_m[f"layers.{i}.b"], tape)
        z = add_bias(matmul_t(a, W, tape), b, tape)
        a = activation(z, layer["activation"], tape)
        zs.append(z)
        acts.append(a)
    root = loss(a, y_m, spec["loss"], tape)
    backward(root, tape)
    names = [f"layers.{i}" for i in range(len(spec["layers"]))]
    return {
        "loss": float(root.value),
        "grads": {k: _f64(n.grad) for k, n in leaves.items()},
        "input_grad": _f64(x_node.grad),
        "pre_activations": {k: _f64(z.value) for k, z in zip(names, zs)},
        "activations": {k: _f64(a.value) for k, a in zip(names, acts)},
        "deltas": {k: _f64(z.grad) for k, z in zip(names, zs)},
        # f'(z_i): lets a caller bound the terms behind each gradient (bpcheck.judge.compare)
        "local_derivatives": {k: _f64(a.local_derivative) for k, a in zip(names, acts)},
        "dtype": "float64",
    }


def richardson_grad(f, theta, h=1e-3, levels=4):
    """Gradient of scalar f at flat float64 theta: central differences at steps
    h, h/2, ..., h/2^(levels-1), Richardson-extrapolated (error O(h^(2 levels)))."""
    theta = np.asarray(theta, dtype=np.float64)
    grad = np.empty_like(theta)
    for i in range(theta.size):
        table = []
        for k in range(levels):
            step = h / 2**k
            tp, tm = theta.copy(), theta.copy()
            tp[i] += step
            tm[i] -= step
            row = [(f(tp) - f(tm)) / (tp[i] - tm[i])]    # the steps actually taken
            for j in range(1, k + 1):
                row.append(row[j - 1] + (row[j - 1] - table[-1][j - 1]) / (4**j - 1))
            table.append(row)
        grad[i] = table[-1][-1]
    return grad
