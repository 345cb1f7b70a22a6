"""The certified arbiter: the contract's network evaluated in ball arithmetic.

What it is: the network, loss and gradients of ``oracles.numeric`` (same formulas,
conventions and Result dict) computed with python-flint's ``arb`` balls: every
quantity is a ball [mid +- rad] that provably contains the exact real value, so
the accuracy of each answer is known, not argued. Inputs (float32 or float64)
are taken at their exact binary values. The forward pass z_i = a_{i-1} W_i^T +
b_i is one ``arb_mat`` product per layer (the bias folded in as a column of
ones, so each z is one rounded dot product); activations and loss go entry by
entry; the backward pass is two products per layer (delta^T [a_{i-1} | 1] =
[dW | db], delta W = the gradient flowing down). Scalar formulas are numeric.py's
cancellation-free forms (sigma from e^-|z|, sech^2 = 4e/(1+e)^2 with e =
e^-2|z|, log1p, erfc for the exact GELU, log1p(sum e^{z_j - z_y}) for softmax
cross-entropy), and 1 - a for a sigmoid output is sigma(-z), never a
subtraction: saturated inputs (|z| of 700 and more) cost no extra bits. A branch
on a sign (a kink, a clamp) is taken only when the ball decides it: an exact 0
takes the convention at 0, a ball straddling the branch point is redone with
more bits.

Adaptive precision: a case runs at ``START_BITS`` (128) and every returned entry
is checked: radius <= 2^-62 max(|mid|, 2^-40 max|mid| over its tensor, 2^-1074).
The last term lets a value that is exactly 0 by symmetry but computed from
inexact balls (two identical softmax logits) be certified as float64 0; nothing
relative can be. If an entry fails, or a branch is undecided, the case is redone
with at least twice the bits (more if the worst radius asks for it), up to
``MAX_BITS``, then ``ArithmeticError``. Midpoints are rounded once to float64;
the Result also carries ``rel_radius`` (per tensor, the largest radius /
max(|mid|, 2^-40 max|mid|, 2^-1074)) and ``bits``.

What it is not: thread-safe (it sets flint's global ``ctx.prec``, restoring it),
or a copy of the reference or of numeric.py: it imports neither ``reference``,
``bpcheck``, torch, jax nor mpmath.

Conventions: numeric.py's, no framework's: softplus has no cut-over, BCE's log
is not clamped, gelu is the exact erf form, gelu_tanh the tanh form; relu'(0) =
0, leaky_relu'(0) = 0.01 (slope 1/100), elu'(0) = 1. The ``name@convention``
variants evaluate a framework's documented convention (source in each rule's
docstring) on the exact values.

Cost (one core): ~3,000 cases/s for a 3-8-8-2 net at batch 4, ~330/s for six
mixed layers of 16 at batch 8 (7-9x numeric.py); 128 bits suffice for almost
every case. Per entry, gelu (erfc) is the dearest activation, identity the
cheapest; converting the balls to floats and radii is about a quarter of it.
"""
from itertools import chain

import numpy as np
from flint import arb, arb_mat, ctx

__all__ = ["backprop", "activation_rule", "ACTIVATIONS", "LOSSES", "START_BITS", "MAX_BITS"]

START_BITS = {"float32": 128, "float64": 128}   # first working precision, by spec dtype
MAX_BITS = 2048                                 # beyond this: ArithmeticError
TARGET, FLOOR = 2.0**-62, 2.0**-40              # radius <= TARGET max(|mid|, FLOOR scale)
TINY = 5e-324                                   # smallest positive float64
ONE, ZERO, TWO, FOUR, HALF = arb(1), arb(0), arb(2), arb(4), arb(0.5)   # exact
_C = {}                                         # constants at the working precision


class _NeedBits(Exception):
    """A ball straddles a branch point (a kink, a clamp): redo with more bits."""


def _set_constants():
    pi, k = arb.pi(), arb(44715) / 10**6
    _C.update(two_c=2 * (2 / pi).sqrt(), k=k, three_k=3 * k, slope=ONE / 100,
              neg_rsqrt2=-arb(2).rsqrt(), rsqrt2pi=(2 * pi).rsqrt())


# ---------------------------------------------------------------- scalar rules
# Each activation maps one ball z to (f(z), f'(z)).

def activation_rule(name):
    """The scalar rule ``z -> (f(z), f'(z))`` of activation ``name`` (a ``name@convention`` variant
    included), its constants set at the current working precision. For callers that evaluate
    activations entry by entry (the op catalog); raises KeyError for an unknown name."""
    rule = ACTIVATIONS[name]
    _set_constants()
    return rule


def _pos(z):
    """max(z, 0), exact when the sign of z is decided."""
    if z >= ZERO:
        return z
    if z <= ZERO:
        return ZERO
    return (z + abs(z)) / 2


def _sig_pair(z):
    """(sigma(z), sigma(-z), e^-|z|): one exp, no cancellation."""
    if z >= ZERO:
        e = (-z).exp()
        p = ONE / (ONE + e)
        return p, e * p, e
    if z <= ZERO:
        e = z.exp()
        p = ONE / (ONE + e)
        return e * p, p, e
    return ONE / (ONE + (-z).exp()), ONE / (ONE + z.exp()), (-abs(z)).exp()  # z straddles 0


_QUARTER = arb(0.25)


def _sigmoid(z):
    p, q, _ = _sig_pair(z)
    return p, p * q                                  # sigma' = sigma(z) sigma(-z)


def _tanh(z):
    if z > _QUARTER or z < -_QUARTER:                # sech^2 = 4e / (1 + e)^2, e = e^-2|z|
        e = (-TWO * abs(z)).exp()
        o = ONE + e
        t = (ONE - e) / o
        return (t if z > ZERO else -t), FOUR * e / (o * o)
    t = z.tanh()                                     # |z| <= 1/4, where 1 - e would cancel
    return t, ONE - t * t                            # and 1 - t^2 > 15/16 does not


def _softplus(z):
    p, _, e = _sig_pair(z)
    return _pos(z) + e.log1p(), p                    # softplus' = sigma


def _softplus_torch(z):
    """torch.nn.functional.softplus(z) with its defaults beta=1, threshold=20: "reverts
    to the linear function when input * beta > threshold" (torch.nn.Softplus docs;
    aten softplus kernel ``x * beta > threshold ? x : log1p(exp(x * beta)) / beta`` and
    its backward). So z, derivative 1, where z > 20; softplus (no cut) where z <= 20."""
    if z > 20:
        return z, ONE
    if z <= 20:
        return _softplus(z)
    raise _NeedBits


def _relu(z):
    if z > ZERO:
        return z, ONE
    if z <= ZERO:
        return ZERO, ZERO                            # relu'(0) = 0
    raise _NeedBits


def _relu_one_at_zero(z):
    """relu with derivative 1 at z = 0: PyTorch's z.clamp(min=0) / torch.clamp_min,
    whose backward is ``where(self >= min, grad, 0)`` (tools/autograd/derivatives.yaml,
    clamp_min), unlike torch.relu (threshold_backward: 0 at 0)."""
    if z >= ZERO:
        return z, ONE
    if z < ZERO:
        return ZERO, ZERO
    raise _NeedBits


def _leaky_relu(z):
    if z > ZERO:
        return z, ONE
    if z <= ZERO:
        return z / 100, _C["slope"]                  # leaky_relu'(0) = 0.01
    raise _NeedBits


def _leaky_relu_one_at_zero(z):
    """leaky_relu (slope 0.01) with derivative 1 at z = 0: jax.nn.leaky_relu is
    ``jnp.where(x >= 0, x, negative_slope * x)`` (jax/_src/nn/functions.py), and
    differentiating the where takes the x >= 0 branch at 0."""
    if z >= ZERO:
        return z, ONE
    if z < ZERO:
        return z / 100, _C["slope"]
    raise _NeedBits


def _elu(z):
    if z > ZERO:
        return z, ONE
    if z < -ONE:                                     # e^z < 1/e: e - 1 does not cancel
        e = z.exp()
        return e - ONE, e
    if z <= ZERO:                                    # expm1 keeps small |z|; elu'(0) = 1
        m = z.expm1()
        return m, m + ONE
    raise _NeedBits


def _gelu(z):
    cdf = (z * _C["neg_rsqrt2"]).erfc() * HALF       # Phi(z), no 1 + erf cancellation
    pdf = (z * z * -HALF).exp() * _C["rsqrt2pi"]
    return z * cdf, cdf + z * pdf


def _gelu_tanh(z):
    # 0.5 z (1 + tanh u) = z sigma(2u);  u = c (z + k z^3),  c = sqrt(2/pi)
    zz, two_c_z = z * z, _C["two_c"] * z
    p, q, _ = _sig_pair(two_c_z * (ONE + _C["k"] * zz))
    return z * p, p + two_c_z * p * q * (ONE + _C["three_k"] * zz)


def _silu(z):
    p, q, _ = _sig_pair(z)
    return z * p, p * (ONE + z * q)                  # (z sigma)' = sigma (1 + z sigma(-z))


ACTIVATIONS = {
    "identity": lambda z: (z, ONE), "relu": _relu, "leaky_relu": _leaky_relu,
    "sigmoid": _sigmoid, "tanh": _tanh, "softplus": _softplus, "elu": _elu,
    "gelu": _gelu, "gelu_tanh": _gelu_tanh, "silu": _silu,
    "softplus@torch": _softplus_torch, "relu@one_at_zero": _relu_one_at_zero,
    "leaky_relu@one_at_zero": _leaky_relu_one_at_zero,
}

# Each loss maps (a, z, y, B, D) -- the last activation and pre-activation as flat
# row-major lists of B*D balls, y as exact balls (class indices for softmax) -- to
# (loss ball, list of dLoss/da balls).


def _squared(den):                                   # loss = sum (a - y)^2 / den(B, D)
    def loss(a, z, y, B, D):
        d = [ai - yi for ai, yi in zip(a, y)]
        n, s = len(d), den(B, D)
        two_over_s = TWO / s
        return (arb_mat(1, n, d) * arb_mat(n, 1, d))[0, 0] / s, [di * two_over_s for di in d]
    return loss


def _bce_terms(z, y):
    """Per entry: (-[y log sigma(z) + (1-y) log sigma(-z)], sigma(z), sigma(-z))."""
    out = []
    for zi, yi in zip(z, y):
        p, q, e = _sig_pair(zi)
        l1p = e.log1p()                              # log sigma(+-z) = -(max(-+z, 0) + l1p)
        out.append((yi * (_pos(-zi) + l1p) + (1 - yi) * (_pos(zi) + l1p), p, q))
    return out


def _binary_cross_entropy(a, z, y, B, D):
    """a = sigma(z) (the last activation must be sigmoid), 1 - a = sigma(-z)."""
    n, terms = B * D, _bce_terms(z, y)
    return (sum(t for t, _, _ in terms) / n,
            [((1 - yi) * p - yi * q) / (p * q) / n for (_, p, q), yi in zip(terms, y)])


_EPS = arb(float(np.float32(1e-12)))                 # torch's `constexpr float EPSILON = 1e-12`
_LOG_FLOOR = arb(-100)


def _at_least(v, floor):
    """max(v, floor), decided on the ball."""
    if v >= floor:
        return v
    if v <= floor:
        return floor
    raise _NeedBits


def _binary_cross_entropy_torch(a, z, y, B, D):
    """torch.nn.functional.binary_cross_entropy (reduction='mean'): "BCELoss clamps its
    log function outputs to be greater than or equal to -100" (torch.nn.BCELoss docs),
    and its backward (aten/src/ATen/native/Loss.cpp, binary_cross_entropy_backward) is
    grad * (a - y) / max((1 - a) a, EPSILON) / n with ``constexpr float EPSILON =
    1e-12``, i.e. float32(1e-12) = 9.99999996e-13 in both dtypes. Clamp and floor are
    decided on the exact values (log a = -softplus(-z), 1 - a = sigma(-z))."""
    n, loss, grad = B * D, ZERO, []
    for zi, yi in zip(z, y):
        p, q, e = _sig_pair(zi)
        l1p = e.log1p()
        loss -= (yi * _at_least(-(_pos(-zi) + l1p), _LOG_FLOOR)
                 + (1 - yi) * _at_least(-(_pos(zi) + l1p), _LOG_FLOOR))
        grad.append(((1 - yi) * p - yi * q) / _at_least(p * q, _EPS) / n)
    return loss / n, grad


def _bce_with_logits(a, z, y, B, D):
    """softplus(a) - y a as y softplus(-a) + (1-y) softplus(a); grad sigma(a) - y."""
    n, terms = B * D, _bce_terms(a, y)
    return (sum(t for t, _, _ in terms) / n,
            [((1 - yi) * p - yi * q) / n for (_, p, q), yi in zip(terms, y)])


def _softmax_cross_entropy(a, z, y, B, D):
    """Per row: log(sum_j e^{a_j}) - a_y = log1p(s), s = sum_{j != y} e^{a_j - a_y}."""
    total, grad = ZERO, []
    for b, cls in enumerate(y):
        row = a[b * D:(b + 1) * D]
        e = [ZERO if j == cls else (v - row[cls]).exp() for j, v in enumerate(row)]
        s = sum(e)
        total += s.log1p()
        e[cls] = -s                                  # softmax_y - 1, without cancellation
        den = (ONE + s) * B
        grad += [v / den for v in e]
    return total / B, grad


LOSSES = {
    "sse": _squared(lambda B, D: 1),
    "half_sse": _squared(lambda B, D: 2),
    "mse": _squared(lambda B, D: B * D),
    "quadratic": _squared(lambda B, D: 2 * B),
    "binary_cross_entropy": _binary_cross_entropy,
    "bce_with_logits": _bce_with_logits,
    "softmax_cross_entropy": _softmax_cross_entropy,
    "binary_cross_entropy@torch": _binary_cross_entropy_torch,
}

# ------------------------------------------------------------------ the network

_KEYS = ("pre_activations", "activations", "deltas", "local_derivatives")


def _prepare(spec, params, x, y):
    """Exact, precision-independent inputs: [W_i | b_i] and [x | 1] as arb_mats, y as
    a list of exact balls (of ints for softmax_cross_entropy), the batch size."""
    for layer in spec["layers"]:
        if layer["activation"] not in ACTIVATIONS:
            raise ValueError(f"unknown activation {layer['activation']!r}")
    if spec["loss"] not in LOSSES:
        raise ValueError(f"unknown loss {spec['loss']!r}")
    if spec["loss"].startswith("binary_cross_entropy") and spec["layers"][-1]["activation"] != "sigmoid":
        raise ValueError(f"loss {spec['loss']!r} needs a sigmoid last layer")
    def f64(v):                                      # float32 -> float64 is exact
        v = np.asarray(v, dtype=np.float64)
        if not np.isfinite(v).all():
            raise ValueError("params, x and y must be finite")
        return v.tolist()
    Wb = []
    for i in range(len(spec["layers"])):
        rows = f64(params[f"layers.{i}.W"])
        for row, b in zip(rows, f64(params[f"layers.{i}.b"])):
            row.append(b)
        Wb.append(arb_mat(rows))
    x = [row + [1.0] for row in f64(x)]
    if spec["loss"] == "softmax_cross_entropy":
        y = [int(c) for c in np.asarray(y).ravel()]
    else:
        y = list(map(arb, f64(np.ravel(y))))
    return Wb, arb_mat(x), y, len(x)


def _split(entries, cols):
    """Row-major entries of an (r, cols) matrix -> (its first cols-1 columns, its last)."""
    body = []
    for r in range(0, len(entries), cols):
        body += entries[r:r + cols - 1]
    return body, entries[cols - 1::cols]


def _evaluate(spec, prepared):
    """Every returned quantity at the current precision: a list of (key path, shape,
    flat row-major sequence of balls)."""
    Wb, A, y, B = prepared
    _set_constants()
    inputs, zs, fs, dfs = [], [], [], []             # per layer: [a_{i-1} | 1], z, f(z), f'(z)
    for W, layer in zip(Wb, spec["layers"]):
        inputs.append(A)
        z = (A * W.transpose()).entries()            # one rounded dot product per entry
        f, df = zip(*map(ACTIVATIONS[layer["activation"]], z))
        zs.append(z), fs.append(f), dfs.append(df)
        u, aug = W.nrows(), []
        for r in range(0, len(f), u):
            aug += f[r:r + u]
            aug.append(ONE)
        A = arb_mat(B, u + 1, aug)
    loss, g = LOSSES[spec["loss"]](fs[-1], zs[-1], y, B, len(zs[-1]) // B)
    out, deltas = [], [None] * len(Wb)
    for i in reversed(range(len(Wb))):
        u, cols = Wb[i].nrows(), Wb[i].ncols()
        deltas[i] = [gi * di for gi, di in zip(g, dfs[i])]
        D = arb_mat(B, u, deltas[i])
        dW, db = _split((D.transpose() * inputs[i]).entries(), cols)
        out = [(("grads", f"layers.{i}.W"), (u, cols - 1), dW), (("grads", f"layers.{i}.b"), (u,), db)] + out
        g = _split((D * Wb[i]).entries(), cols)[0]
    out = [(("loss",), (), [loss])] + out + [(("input_grad",), (B, Wb[0].ncols() - 1), g)]
    for i, tensors in enumerate(zip(zs, fs, deltas, dfs)):
        out += [((key, f"layers.{i}"), (B, Wb[i].nrows()), v) for key, v in zip(_KEYS, tensors)]
    return out


def _certify(tensors):
    """(midpoints as float64, per-tensor rel_radius, worst entry's rel_radius)."""
    flat = list(chain.from_iterable(vs for _, _, vs in tensors))
    n, sizes = len(flat), [len(vs) for _, _, vs in tensors]
    mid = np.fromiter(map(float, flat), np.float64, n)
    rad = np.fromiter(map(float, map(arb.rad, flat)), np.float64, n)
    starts = np.cumsum([0] + sizes[:-1])
    if not np.isfinite(mid).all():
        t = np.searchsorted(starts, np.flatnonzero(~np.isfinite(mid))[0], side="right") - 1
        raise ArithmeticError(f"{'/'.join(tensors[t][0])} is outside the float64 range")
    scale = np.repeat(np.maximum.reduceat(np.abs(mid), starts), sizes)
    base = np.maximum(np.maximum(np.abs(mid), FLOOR * scale), TINY)
    ratio = rad / base
    for i in np.flatnonzero((rad < 2.0**-1000) & (base < 2.0**-900)):
        ratio[i] = float(flat[i].rad() / base[i])    # its radius may have underflowed float64
    return mid, np.maximum.reduceat(ratio, starts), ratio.max()


def _certified(spec, params, x, y, start_bits=None, max_bits=MAX_BITS):
    """(tensors, midpoints, rel radii, bits) at the first precision that certifies."""
    prepared = _prepare(spec, params, x, y)
    bits, saved = start_bits or START_BITS.get(spec.get("dtype"), 128), ctx.prec
    try:
        while True:
            ctx.prec = bits
            try:
                tensors = _evaluate(spec, prepared)
                mid, rel, worst = _certify(tensors)
                if worst <= TARGET:
                    return tensors, mid, rel, bits
                why, more = f"worst relative radius {worst:.3g}", np.log2(worst) + 62 + 32
            except _NeedBits:
                why, more = "a branch point (kink or clamp) undecided", 0
            if bits >= max_bits:
                raise ArithmeticError(f"not certified at {bits} bits ({why}): the case needs "
                                      f"more than max_bits={max_bits}")
            bits = int(min(max_bits, max(2 * bits, 64 * np.ceil((bits + more) / 64))))
    finally:
        ctx.prec = saved


def _balls(spec, params, x, y, **kw):
    """The balls themselves (for tests): ({key path: (shape, list of arb)}, bits)."""
    tensors, _, _, bits = _certified(spec, params, x, y, **kw)
    return {path: (shape, vs) for path, shape, vs in tensors}, bits


def backprop(spec, params, x, y, *, start_bits=None, max_bits=MAX_BITS):
    """Loss, gradients, input gradient and per-layer z, a, dLoss/dz, f'(z), certified.

    spec: {"input_dim", "layers": [{"units", "activation"}], "loss", "dtype"};
    params["layers.{i}.W"] (units_i, fan_in_i), params["layers.{i}.b"] (units_i,);
    x (batch, input_dim); y (batch, units_last), or int classes (batch,) for
    softmax_cross_entropy. Arrays float32 or float64, taken at their exact values.

    Returns the Result dict (same keys as numeric.backprop): "loss" (float),
    "grads" {name: float64 array of the param's shape}, "input_grad" (batch,
    input_dim), "pre_activations", "activations", "deltas", "local_derivatives"
    {"layers.{i}": (batch, units_i)}, "dtype": "float64"; plus "rel_radius" (same
    structure, one float per tensor: max radius / max(|mid|, 2^-40 max|mid|, 5e-324))
    and "bits" (the working precision used).

    Raises ValueError for an unknown activation or loss name, non-finite inputs, or a
    binary_cross_entropy loss without a sigmoid last layer; ArithmeticError when
    max_bits do not certify every entry, or a result lies outside the float64 range.
    """
    tensors, mid, rel, bits = _certified(spec, params, x, y, start_bits, max_bits)
    res = {"grads": {}, **{key: {} for key in _KEYS}, "dtype": "float64"}
    radii = {"grads": {}, **{key: {} for key in _KEYS}}
    values = np.split(mid, np.cumsum([len(vs) for _, _, vs in tensors[:-1]]))
    for (path, shape, _), value, r in zip(tensors, values, rel.tolist()):
        if len(path) == 1:
            res[path[0]], radii[path[0]] = value.reshape(shape), r
        else:
            res[path[0]][path[1]], radii[path[0]][path[1]] = value.reshape(shape), r
    res["loss"] = float(res["loss"])
    return {**res, "rel_radius": radii, "bits": bits}
