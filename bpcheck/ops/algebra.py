"""Three readings of one op definition: certified balls, the rounding model, plain float64.

An op record writes its forward and its vector-Jacobian product once, against a
small array namespace ``ns`` (operators ``+ - * /`` and unary ``-`` on the
arrays, plus the functions below). The same code then runs as

- ``Exact(bits)``: NumPy object arrays of python-flint ``arb`` balls, each
  provably containing the exact real value (inputs are taken at their exact
  binary values). This is the truth.
- ``Model(dtype)``: ``Err`` arrays carrying a float64 value v and a bound e on
  how far an implementation of the same equations in ``dtype`` may be from the
  exact value: first-order running error analysis (Higham, *Accuracy and
  Stability of Numerical Algorithms*, 2nd ed., §3.1 and §3.3) with unit
  roundoff u. A sum of n terms in any order gets gamma_{n-1} sum|x_i| with
  gamma_k = k u / (1 - k u) (Higham Lemma 3.1), a dot product of length k
  gamma_k |a|.|b| (Higham (3.5)); a correctly rounded operation (+ - * / sqrt)
  adds u |result|, a library function (exp, log) K_FN u |result|; every
  operation adds the dtype's smallest normal number, for flushed subnormals.
  e / u is the "s" of a tolerance: ``bpcheck.opcheck.judge`` passes a tensor when
  ||g - g*|| <= SAFETY u ||s|| + floor, as the dense path does.
- ``Plain()``: float64 NumPy arrays (hints, slips, tie search).

``ns.either(first, *others)`` names forms a correct implementation may use for the same quantity
(a framework's documented formula beside the record's): every reading takes ``first``'s value, and
the model's bound covers each form.

Branches (a mask, an argmax) are never taken on balls: a record computes them
from the inputs' float values, which are exact, so every reading takes the
same branch.
"""
import numpy as np
from flint import arb, arb_mat

from bpcheck.core.rounding import K_FN, Z_TIMES, activation
from oracles.arb_oracle import activation_rule

__all__ = ["Exact", "Model", "Plain", "Err", "UNIT_ROUNDOFF", "floats"]

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


def _gamma(k, u):
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of k roundings in a row."""
    k = np.asarray(k, dtype=np.float64)
    return np.where(k * u < 0.5, k * u / (1 - k * u), np.inf)


# --- the rounding model -------------------------------------------------------------------------

class Err:
    """A float64 value ``v`` and a bound ``e`` (same shape) on |computed - exact| in the model's dtype."""
    __slots__ = ("v", "e", "m")
    __array_ufunc__ = None                       # ndarray (op) Err defers to Err's reflected operator

    def __init__(self, v, e, m):
        self.v, self.e, self.m = np.asarray(v, dtype=np.float64), np.asarray(e, dtype=np.float64), m

    shape = property(lambda self: self.v.shape)
    ndim = property(lambda self: self.v.ndim)
    size = property(lambda self: self.v.size)

    def _wrap(self, other):
        return other if isinstance(other, Err) else self.m.const(other)

    def __add__(self, other):
        o = self._wrap(other)
        v = self.v + o.v
        return Err(v, self.e + o.e + self.m.local(v), self.m)

    __radd__ = __add__

    def __sub__(self, other):
        o = self._wrap(other)
        v = self.v - o.v
        return Err(v, self.e + o.e + self.m.local(v), self.m)

    def __rsub__(self, other):
        return self._wrap(other) - self

    def __neg__(self):
        return Err(-self.v, self.e, self.m)

    def __mul__(self, other):
        o = self._wrap(other)
        v = self.v * o.v
        e = np.abs(self.v) * o.e + np.abs(o.v) * self.e + self.e * o.e
        return Err(v, e + self.m.local(v), self.m)

    __rmul__ = __mul__

    def __truediv__(self, other):
        o = self._wrap(other)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = self.v / o.v
            room = np.abs(o.v) - o.e
            e = np.where(room > 0, (self.e + np.abs(v) * o.e) / room, np.inf)
        return Err(v, e + self.m.local(v), self.m)

    def __rtruediv__(self, other):
        return self._wrap(other) / self

    def __getitem__(self, index):
        return Err(self.v[index], self.e[index], self.m)

    def reshape(self, *shape):
        return Err(self.v.reshape(*shape), self.e.reshape(*shape), self.m)

    def transpose(self, *axes):
        return Err(self.v.transpose(*axes), self.e.transpose(*axes), self.m)

    T = property(lambda self: self.transpose())


class Model:
    """The rounding model in ``dtype`` ("float32" or "float64"): the namespace over ``Err``."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.u = UNIT_ROUNDOFF[dtype]
        self.tiny = float(np.finfo(dtype).tiny)

    def local(self, v, k=1.0):
        """The error one operation adds: k u |v| + the underflow floor."""
        return k * self.u * np.abs(v) + self.tiny

    def input(self, a):
        return Err(np.asarray(a, dtype=np.float64), np.zeros(np.shape(a)), self)

    def const(self, c):
        """A constant: exact if the dtype holds it (integers, 0.5), else rounded once."""
        c = np.asarray(c, dtype=np.float64)
        held = np.asarray(c.astype(self.dtype), dtype=np.float64) == c
        return Err(c, np.where(held, 0.0, self.u * np.abs(c)), self)

    def zeros(self, shape):
        return Err(np.zeros(shape), np.zeros(shape), self)

    def sum(self, a, axis=None, keepdims=False):
        v = np.sum(a.v, axis=axis, keepdims=keepdims)
        n = a.v.size // max(v.size, 1)
        e = (np.sum(a.e, axis=axis, keepdims=keepdims)
             + _gamma(max(n - 1, 0), self.u) * np.sum(np.abs(a.v), axis=axis, keepdims=keepdims))
        return Err(v, e + self.tiny, self)

    def mean(self, a, axis=None, keepdims=False):
        s = self.sum(a, axis, keepdims)
        return s / (a.v.size // max(s.v.size, 1))

    def matmul(self, a, b):
        a, b = (x if isinstance(x, Err) else self.input(x) for x in (a, b))
        k = a.v.shape[-1]
        abs_ab = np.abs(a.v) @ np.abs(b.v)
        e = np.abs(a.v) @ b.e + a.e @ np.abs(b.v) + a.e @ b.e + _gamma(k, self.u) * abs_ab
        return Err(a.v @ b.v, e + self.tiny, self)

    def sqrt(self, a):
        v = np.sqrt(a.v)
        low = np.sqrt(np.maximum(a.v - a.e, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.where(v + low > 0, a.e / (v + low), np.sqrt(a.e))
        return Err(v, e + self.local(v), self)

    def exp(self, a):
        v = np.exp(a.v)
        return Err(v, v * np.expm1(a.e) + self.local(v, K_FN), self)

    def log(self, a):
        v = np.log(a.v)
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.where(a.e < a.v, -np.log1p(-a.e / a.v), np.inf)
        return Err(v, e + self.local(v, K_FN), self)

    def log1p(self, a):
        v = np.log1p(a.v)
        with np.errstate(divide="ignore", invalid="ignore"):
            room = 1 + a.v - a.e
            e = np.where(room > 0, a.e / room, np.inf)
        return Err(v, e + self.local(v, K_FN), self)

    def where(self, mask, a, b):
        a, b = (x if isinstance(x, Err) else self.const(x) for x in (a, b))
        return Err(np.where(mask, a.v, b.v), np.where(mask, a.e, b.e), self)

    def either(self, first, *others):
        """``first``'s value with a bound covering every form given: a correct implementation may
        compute the same quantity any of these ways (the record's admissible forms), so the bound is
        the largest of each form's own bound plus its distance from ``first``."""
        e = first.e
        for other in others:
            e = np.maximum(e, other.e + np.abs(other.v - first.v))
        return Err(first.v, e, self)

    def pad(self, a, width):
        return Err(np.pad(a.v, width), np.pad(a.e, width), self)

    def scatter_add(self, shape, index, values):
        """zeros(shape) with values added at ``index`` (repeats accumulate): a sum per slot."""
        v, e, mag, count = (np.zeros(shape) for _ in range(4))
        np.add.at(v, index, values.v)
        np.add.at(e, index, values.e)
        np.add.at(mag, index, np.abs(values.v))
        np.add.at(count, index, 1.0)
        return Err(v, e + _gamma(np.maximum(count - 1, 0), self.u) * mag + self.tiny, self)

    def concat(self, parts, axis):
        return Err(np.concatenate([p.v for p in parts], axis), np.concatenate([p.e for p in parts], axis), self)

    def scale(self, a):
        """s = e / u: the bound in units of the dtype's unit roundoff."""
        return a.e / self.u

    def activation(self, name, z):
        """(f(z), f'(z)) with their bounds: the input's error carried by f' and f'', plus the local
        rounding of each as written (``bpcheck.core.rounding.activation``'s rho_f, rho_d, which cover the
        textbook forms too), and the underflow floor -- times 1 + |z| in z sigma(z) and z Phi(z), where
        z multiplies a flushed intermediate (``bpcheck.core.rounding.Z_TIMES``, as the dense bound does)."""
        base = name.split("@")[0]
        f, d1, d2, rho_f, rho_d = activation(base, z.v)
        floor = self.tiny * (1 + np.abs(z.v)) if base in Z_TIMES else self.tiny
        return (Err(f, np.abs(d1) * z.e + self.u * rho_f + floor, self),
                Err(d1, np.abs(d2) * z.e + self.u * rho_d + floor, self))


# --- certified balls ----------------------------------------------------------------------------

_SQRT = np.frompyfunc(lambda t: t.sqrt(), 1, 1)
_EXP = np.frompyfunc(lambda t: t.exp(), 1, 1)
_LOG = np.frompyfunc(lambda t: t.log(), 1, 1)
_LOG1P = np.frompyfunc(lambda t: t.log1p(), 1, 1)
_ARB = np.frompyfunc(lambda f: arb(f), 1, 1)
_MID = np.frompyfunc(lambda t: float(t.mid()), 1, 1)
_RAD = np.frompyfunc(lambda t: float(t.rad()), 1, 1)


class Exact:
    """python-flint ``arb`` balls in NumPy object arrays, at ``bits`` bits (set for each call's scope
    by ``bpcheck.ops.exact``). Floats enter at their exact binary values."""

    def __init__(self, bits):
        self.bits = bits

    def input(self, a):
        a = np.asarray(a, dtype=np.float64)
        return _ARB(a).astype(object) if a.shape else np.asarray(arb(float(a)), dtype=object)

    def const(self, c):
        return self.input(c)

    def zeros(self, shape):
        return np.full(shape, arb(0), dtype=object)

    def sum(self, a, axis=None, keepdims=False):
        out = np.sum(a, axis=axis, keepdims=keepdims)
        return out if isinstance(out, np.ndarray) else np.asarray(out, dtype=object)

    def mean(self, a, axis=None, keepdims=False):
        s = self.sum(a, axis, keepdims)
        return s / (a.size // max(s.size, 1))

    def matmul(self, a, b):
        """A 2-d product in flint's arb_mat (C, ~10x NumPy's object loop); other shapes by NumPy."""
        if np.ndim(a) == 2 and np.ndim(b) == 2 and a.size and b.size:
            product = arb_mat(a.tolist()) * arb_mat(b.tolist())
            return np.array(product.entries(), dtype=object).reshape(a.shape[0], b.shape[1])
        return np.matmul(a, b)

    def sqrt(self, a):
        return _SQRT(a)

    def exp(self, a):
        return _EXP(a)

    def log(self, a):
        return _LOG(a)

    def log1p(self, a):
        return _LOG1P(a)

    def where(self, mask, a, b):
        return np.where(mask, a, b)

    def either(self, first, *others):
        """The value is ``first``'s (every form is the same real number)."""
        return first

    def pad(self, a, width):
        out = self.zeros(tuple(n + lo + hi for n, (lo, hi) in zip(a.shape, width)))
        out[tuple(slice(lo, lo + n) for n, (lo, _) in zip(a.shape, width))] = a
        return out

    def scatter_add(self, shape, index, values):
        out = self.zeros(shape)
        np.add.at(out, index, values)
        return out

    def concat(self, parts, axis):
        return np.concatenate(parts, axis)

    def activation(self, name, z):
        rule = activation_rule(name)
        pairs = [rule(t) for t in np.asarray(z, dtype=object).ravel()]
        f, d = (np.empty(len(pairs), dtype=object) for _ in range(2))
        for i, (fi, di) in enumerate(pairs):
            f[i], d[i] = fi, di
        return f.reshape(np.shape(z)), d.reshape(np.shape(z))

    @staticmethod
    def mid(a):
        """Midpoints, rounded once to float64."""
        return np.asarray(_MID(a), dtype=np.float64) if np.ndim(a) else float(np.asarray(a).item().mid())

    @staticmethod
    def rad(a):
        return np.asarray(_RAD(a), dtype=np.float64) if np.ndim(a) else float(np.asarray(a).item().rad())


# --- plain float64 ------------------------------------------------------------------------------

class Plain:
    """float64 NumPy arrays: the definition evaluated once, quickly, for hints, slips and tie search."""

    def input(self, a):
        return np.asarray(a, dtype=np.float64)

    const = input

    def zeros(self, shape):
        return np.zeros(shape)

    def sum(self, a, axis=None, keepdims=False):
        return np.sum(a, axis=axis, keepdims=keepdims)

    def mean(self, a, axis=None, keepdims=False):
        return np.mean(a, axis=axis, keepdims=keepdims)

    matmul = staticmethod(np.matmul)
    sqrt = staticmethod(np.sqrt)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    where = staticmethod(np.where)

    def either(self, first, *others):
        return first

    def pad(self, a, width):
        return np.pad(a, width)

    def scatter_add(self, shape, index, values):
        out = np.zeros(shape)
        np.add.at(out, index, values)
        return out

    def concat(self, parts, axis):
        return np.concatenate(parts, axis)

    def activation(self, name, z):
        f, d1, *_ = activation(name.split("@")[0], z)
        return f, d1


def floats(x):
    """Float64 values of any reading's array: Err's v, balls' midpoints, or the array itself. On inputs
    these are exact, so a branch taken on them (an argmax, a mask) is the same in every reading."""
    if isinstance(x, Err):
        return x.v
    if x.dtype == object:
        return np.vectorize(lambda t: float(t.mid()) if hasattr(t, "mid") else float(t), otypes=[float])(x)
    return np.asarray(x, dtype=np.float64)
