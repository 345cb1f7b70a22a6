"""The truth of an op case: its output and every input gradient in certified ball arithmetic.

``truth(op, case)`` evaluates the record's forward and VJP (``bpcheck.ops.algebra.Exact``) on the
case's exact binary values at ``START_BITS`` and checks every entry: radius <= 2^-62 max(|mid|,
2^-40 max|mid| over its tensor, 2^-1074), as ``oracles.arb_oracle`` does for the dense path, or
radius <= 2^-10 of the float64 rounding model's bound there (an exact 0 reached by cancellation, as a
normalisation's input gradient under a uniform cotangent, has no relative accuracy). An entry
that fails doubles the bits, up to ``MAX_BITS``, then ``ArithmeticError``. ``bound(op, case)`` is the
rounding model's s = e / u per tensor (``bpcheck.ops.algebra.Model``). ``crosscheck(op, case)`` is the
independent check of a record's VJP: 60-digit mpmath central differences of its *forward* alone,
contracted with the cotangent -- it shares nothing with the VJP as written.
"""
import mpmath
import numpy as np
from flint import ctx

from bpcheck.ops.algebra import Exact, Model

__all__ = ["truth", "bound", "crosscheck", "certified", "START_BITS", "MAX_BITS"]

START_BITS, MAX_BITS = 128, 2048
TARGET, FLOOR, TINY = 2.0**-62, 2.0**-40, 5e-324
CANCEL = 2.0**-10      # or radius <= 2^-10 of float64's own rounding bound there (a value that cancels to 0)


def _evaluate(op, case, ns):
    a = {k: ns.input(v) for k, v in case.inputs.items()}
    out = op.forward(ns, a, case.constants, case.hyper)
    grads = op.vjp(ns, a, case.constants, case.hyper, ns.input(case.cotangent))
    return out, {k: grads[k] for k in op.inputs}


def certified(mid, rad, e64=0.0):
    """Whether every entry's radius is <= 2^-62 of its size (or of 2^-40 of its tensor's largest), or
    <= 2^-10 of float64's own rounding bound ``e64`` there; a NaN midpoint never is."""
    scale = np.maximum(np.maximum(np.abs(mid), FLOOR * np.max(np.abs(mid), initial=0.0)), TINY)
    return bool(np.all((rad <= TARGET * scale) | (rad <= CANCEL * e64)))


def truth(op, case):
    """{"out": float64 array, "grads": {input: float64 array}, "bits": int}: the exact values, each
    rounded once to float64. Raises ArithmeticError past MAX_BITS."""
    m = Model("float64")
    out64, grads64 = _evaluate(op, case, m)
    e64 = {"out": out64.e, **{k: g.e for k, g in grads64.items()}}
    bits = START_BITS
    while bits <= MAX_BITS:
        with ctx.workprec(bits):
            out, grads = _evaluate(op, case, Exact(bits))
            tensors = {"out": out, **grads}
            mids = {k: np.asarray(Exact.mid(v), dtype=np.float64) for k, v in tensors.items()}
            if all(certified(mids[k], np.asarray(Exact.rad(v)), e64[k]) for k, v in tensors.items()):
                return {"out": mids.pop("out"), "grads": mids, "bits": bits}
        bits *= 2
    raise ArithmeticError(f"{op.name}: the truth needs more than {MAX_BITS} bits")


def bound(op, case):
    """{"out": s, input: s, ...}: the rounding model's error bound in units of the case dtype's u,
    per entry, for an implementation of the record's equations in that dtype."""
    m = Model(case.dtype)
    out, grads = _evaluate(op, case, m)
    return {"out": m.scale(out), **{k: m.scale(g) for k, g in grads.items()}}


def crosscheck(op, case, digits=60, step=1e-25):
    """{input: float64 array}: <cotangent, d forward / d input> by mpmath central differences of the
    record's forward, at ``digits`` digits with step ``step``: an independent check of its VJP."""
    ns = _Mp()
    with mpmath.workdps(digits):
        h = mpmath.mpf(step)
        cot = ns.input(case.cotangent)
        base = {k: ns.input(v) for k, v in case.inputs.items()}
        result = {}
        for name in op.inputs:
            g = np.zeros(case.inputs[name].shape)
            for idx in np.ndindex(*case.inputs[name].shape):
                ends = []
                for sign in (1, -1):
                    a = dict(base)
                    a[name] = base[name].copy()
                    a[name][idx] = a[name][idx] + sign * h
                    ends.append(np.sum(op.forward(ns, a, case.constants, case.hyper) * cot))
                g[idx] = float((ends[0] - ends[1]) / (2 * h))
            result[name] = g
    return result


class _Mp(Exact):
    """mpmath mpf numbers in object arrays (the cross-check's namespace)."""

    def __init__(self):
        super().__init__(0)

    def input(self, a):
        a = np.asarray(a, dtype=np.float64)
        out = np.empty(a.shape, dtype=object)
        for idx in np.ndindex(*a.shape):
            out[idx] = mpmath.mpf(float(a[idx]))
        return out

    const = input

    def zeros(self, shape):
        return np.full(shape, mpmath.mpf(0), dtype=object)

    def sqrt(self, a):
        return np.frompyfunc(mpmath.sqrt, 1, 1)(a)

    def exp(self, a):
        return np.frompyfunc(mpmath.exp, 1, 1)(a)

    def log(self, a):
        return np.frompyfunc(mpmath.log, 1, 1)(a)

    def log1p(self, a):
        return np.frompyfunc(mpmath.log1p, 1, 1)(a)

    def matmul(self, a, b):
        return np.matmul(a, b)                   # mpf objects: NumPy's object loop, at mpmath's precision

    def activation(self, name, z):
        """f(z) by its textbook definition (the cross-check differentiates it; no f' is needed)."""
        return np.frompyfunc(_MP_ACTIVATIONS[name], 1, 1)(z), None


def _gelu_tanh(z):
    return z / 2 * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (z + mpmath.mpf(0.044715) * z**3)))


_MP_ACTIVATIONS = {
    "identity": lambda z: z, "relu": lambda z: max(z, 0), "leaky_relu": lambda z: z if z > 0 else z / 100,
    "sigmoid": lambda z: 1 / (1 + mpmath.exp(-z)), "tanh": mpmath.tanh,
    "softplus": lambda z: mpmath.log1p(mpmath.exp(z)), "elu": lambda z: z if z > 0 else mpmath.expm1(z),
    "gelu": lambda z: z * mpmath.erfc(-z / mpmath.sqrt(2)) / 2, "gelu_tanh": _gelu_tanh,
    "silu": lambda z: z / (1 + mpmath.exp(-z)),
    "softplus@torch": lambda z: z if z > 20 else mpmath.log1p(mpmath.exp(z)),
}
