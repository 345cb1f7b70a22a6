"""How each definition rounds: the per-entry rounding models behind every tolerance.

For every activation and loss of the spec's tables (README, "Conventions") this
module states, as NumPy functions of the exact values, how far a float
evaluation *of the definition as written* can land from the exact result, in
units of the dtype's unit roundoff u. ``bpcheck.judge.bounds`` carries these local
errors through the forward pass and BP1-BP4; ``bpcheck.judge.compare`` turns them
into tolerances.

Model (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 2-3):
every basic operation is correctly rounded, fl(x op y) = (x op y)(1 + e),
|e| <= u; a library function (exp, log, log1p, tanh, erf, erfc) is good to
``K_FN`` u. A formula's local error at one entry is the sum, over its
operations, of |what the operation rounds| times |how much the result depends
on it| -- a running error bound. Where a definition cancels, its terms are
counted, not its result: 1 + erf(z/sqrt 2) for z << 0 is two numbers of size 1
whose sum is tiny, so GELU's error there is ~u |z|, not ~u |gelu(z)|.

Each activation gives ``(f, d1, d2, rho_f, rho_d)`` of z (float64 arrays):
the function, its first and second derivative, and the local rounding of f and
of f' in units of u (absolute). The formulas granted are the *worst* of the
plain textbook form (the one the tutorials write) and the usual stable form,
so that any implementation of the definition passes:

| activation | f as written | f' as written |
|---|---|---|
| sigmoid | 1 / (1 + e^-z) | s (1 - s) (cancels for s ~ 1) |
| tanh | tanh z | 1 - t^2 (cancels for |t| ~ 1) |
| softplus | log(1 + e^z) (cancels for z << 0; overflows past log(max)) | sigmoid(z) |
| elu | e^z - 1 for z <= 0 (cancels near 0) | e^z, or a + 1 from the output |
| gelu | z/2 (1 + erf(z/sqrt 2)) (cancels for z << 0) | (1 + erf)/2 + z phi(z) |
| gelu_tanh | z/2 (1 + tanh(k(z + c z^3))) (cancels for z << 0) | (1 + t)/2 + z/2 (1 - t^2) k (1 + 3 c z^2) |
| silu | z sigmoid(z) | s (1 + z (1 - s)) (cancels for s ~ 1) |
| relu, leaky_relu, identity | exact (leaky: 0.01 z rounds once) | exact |

Each loss gives the value, dC/da (G), its local rounding and how an error in
``a`` moves G (the loss Hessian; diagonal except softmax). For
``bce_with_logits`` and ``softmax_cross_entropy`` the stable forms *are* the
definition (max(z, 0) - z y + log1p(e^-|z|); log-sum-exp shifted by each row's
max), so only their own rounding is granted; ``binary_cross_entropy`` is
granted log(1 - a) and (a - y) / (a (1 - a)) as written.
"""
import math

import numpy as np
from scipy.special import erf, erfc

# A library's exp, log, tanh, erf are good to a few ulp (1 ulp = 2u at 1):
# glibc and NumPy's SIMD float32 paths are within 4 ulp, XLA's tanh ~4 u (README).
# The one definition: compare.TOLERANCE["k_fn"] reports this constant, and tests/test_rounding.py
# checks the libraries against it.
K_FN = 8.0
Z_TIMES = ("silu", "gelu", "gelu_tanh")     # z times a function that underflows: z sigma(z), z Phi(z)

_K = math.sqrt(2 / math.pi)   # gelu_tanh's sqrt(2/pi)
_C = 0.044715
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def sigmoid(z):
    """sigma(z) without overflow for any float64 z."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_pair(z):
    """(sigma(z), sigma(-z)): both without cancellation."""
    e = np.exp(-np.abs(z))
    p, q = 1 / (1 + e), e / (1 + e)
    return np.where(z >= 0, p, q), np.where(z >= 0, q, p)


def _identity(z):
    zero = np.zeros_like(z)
    return z, np.ones_like(z), zero, zero, zero


def _relu(z):
    zero = np.zeros_like(z)
    return np.maximum(z, 0), (z > 0).astype(np.float64), zero, zero, zero


def _leaky_relu(z):
    neg = z <= 0
    zero = np.zeros_like(z)
    # 0.01 is not a binary number: its rounding (< u) and the product's, on the negative side.
    return (np.where(neg, 0.01 * z, z), np.where(neg, 0.01, 1.0), zero,
            np.where(neg, 0.02 * np.abs(z), 0.0), np.where(neg, 0.01, 0.0))


def _sigmoid(z):
    s, q = _sigmoid_pair(z)
    d1 = s * q
    rho_f = (K_FN + 2) * s                          # exp, 1 + e, 1 / (.)
    rho_d = (K_FN + 3) * d1 + (K_FN + 2) * s * s    # 1 - s inherits s's error, absolutely
    return s, d1, d1 * (q - s), rho_f, rho_d


def _tanh(z):
    t = np.tanh(z)
    e = np.exp(-2 * np.abs(z))
    d1 = 4 * e / (1 + e) ** 2                       # sech^2, no cancellation
    # 1 - t^2: t's error doubled, then the subtraction; or 1 / cosh(z)^2: cosh's error doubled
    rho_d = (2 * K_FN + 1) * (t * t + d1)
    return t, d1, -2 * t * d1, K_FN * np.abs(t), rho_d


def _softplus(z):
    s, q = _sigmoid_pair(z)
    f = np.logaddexp(0.0, z)
    rho_f = K_FN * s + 1 + (K_FN + 1) * np.abs(f)   # log(1 + e^z): 1 + e^z rounds by u(1 + e^z)
    return f, s, s * q, rho_f, (K_FN + 2) * s


def _elu(z):
    neg = z <= 0
    e = np.exp(np.minimum(z, 0))
    f = np.where(neg, np.expm1(np.minimum(z, 0)), z)
    rho_f = np.where(neg, K_FN * e + (K_FN + 1) * np.abs(f), 0.0)        # e^z - 1 near 0 cancels
    rho_d = np.where(neg, K_FN * e + (K_FN + 1) * np.abs(f) + e, 0.0)    # e^z, or a + 1 from the output
    return f, np.where(neg, e, 1.0), np.where(neg, e, 0.0), rho_f, rho_d


def _gelu(z):
    cdf = 0.5 * erfc(-z / math.sqrt(2))
    pdf = np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    f, d1 = z * cdf, cdf + z * pdf
    # 1 + erf(z / sqrt 2): erf's own error, the argument's rounding (2u |z| times erf' = 2 phi)
    # and the addition, all of size ~1 where the sum is tiny (z << 0).
    one_plus_erf = K_FN * np.abs(erf(z / math.sqrt(2))) + 2 * cdf + 4 * np.abs(z) * pdf
    rho_f = 0.5 * np.abs(z) * one_plus_erf + 2 * np.abs(f)
    rho_d = 0.5 * one_plus_erf + np.abs(z * pdf) * (K_FN + z * z + 3) + np.abs(d1)
    return f, d1, pdf * (2 - z * z), rho_f, rho_d


def _gelu_tanh(z):
    v = _K * (z + _C * z**3)
    dv = _K * (1 + 3 * _C * z * z)
    t = np.tanh(v)
    e = np.exp(-2 * np.abs(v))
    sech2 = 4 * e / (1 + e) ** 2
    f = 0.5 * z * (1 + t)
    d1 = 0.5 * (1 + t) + 0.5 * z * sech2 * dv
    d2 = sech2 * dv - z * t * sech2 * dv * dv + 3 * _K * _C * z * z * sech2
    t_err = K_FN * np.abs(t) + 6 * np.abs(v) * sech2          # tanh's error and v's six roundings
    one_plus_t = t_err + (1 + t)
    rho_f = 0.5 * np.abs(z) * one_plus_t + 2 * np.abs(f)
    second = 0.5 * np.abs(z) * sech2 * dv
    rho_d = (0.5 * one_plus_t + 0.5 * np.abs(z) * dv * (2 * np.abs(t) * t_err + t * t + sech2)
             + 4 * second + np.abs(d1))
    return f, d1, d2, rho_f, rho_d


def _silu(z):
    s, q = _sigmoid_pair(z)
    f = z * s
    inner = 1 + z * q
    d1 = s * inner
    d2 = s * q * (2 + z * (q - s))
    rho_f = np.abs(z) * (K_FN + 2) * s + np.abs(f)
    # s (1 + z (1 - s)): 1 - s inherits s's error absolutely (cancels for s ~ 1)
    rho_d = (s * (np.abs(z) * ((K_FN + 2) * s + q) + np.abs(inner))
             + (K_FN + 2) * s * np.abs(inner) + np.abs(d1))
    return f, d1, d2, rho_f, rho_d


ACTIVATIONS = {"identity": _identity, "relu": _relu, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid,
               "tanh": _tanh, "softplus": _softplus, "elu": _elu, "gelu": _gelu,
               "gelu_tanh": _gelu_tanh, "silu": _silu}


def activation(name, z):
    """``(f, f', f'', rho_f, rho_d)`` at float64 ``z`` (any shape) for activation ``name``.

    rho_f and rho_d are the local rounding errors of f and f' as written, in units of u,
    absolute (module docstring). Raises KeyError for an unknown name.
    """
    with np.errstate(all="ignore"):
        return ACTIVATIONS[name](np.asarray(z, dtype=np.float64))


# ---- sums ---------------------------------------------------------------------

def norm2(v):
    """The Euclidean norm of ``v`` (any shape) as a float, without overflow or underflow in the
    squares: max|v| * ||v / max|v|||, as BLAS nrm2 scales it. inf if any entry is inf, nan if
    any is nan (and none is inf)."""
    v = np.abs(np.asarray(v, dtype=np.float64)).ravel()
    if v.size == 0:
        return 0.0
    m = float(np.max(v))
    if not 0 < m < math.inf:
        return math.inf if np.any(np.isinf(v)) else m
    return m * float(np.sqrt(np.sum(np.square(v / m))))


def sum_rounding_sq(sq_terms, total, n):
    """Squared rounding scale (units of u^2) of a sum of ``n`` terms in any order:
    n * sum(t^2) + (n / 2)^2 * (sum t)^2.

    Each of the n - 1 additions rounds by at most u |partial sum|. Terms of random sign
    make partial sums of size sqrt(j) |t|, whose roundings add in quadrature to about
    n^2 t^2 / 2 <= n * sum t^2. Terms of one sign make partial sums j |t|, and equal terms
    round the same way every time, so those roundings add up: sum_j j |t| = (n / 2) |sum t|
    (Higham's gamma_n bound, to first order). The products' own rounding (u |t| each) is
    inside the first term. ``sq_terms`` is sum(t^2), ``total`` sum(t).
    """
    return n * sq_terms + (n / 2.0) ** 2 * np.square(total)


def _scaled(scale_of, t):
    """``scale_of(t)`` for a ``scale_of`` homogeneous of degree 1, evaluated on t / max|t| so that
    the squares inside it cannot overflow."""
    m = float(np.max(np.abs(t), initial=0.0))
    return scale_of(t) if not 0 < m < math.inf else m * scale_of(t / m)


# ---- losses -------------------------------------------------------------------

class Loss:
    """A loss at the exact output: value, G = dC/da, and the rounding of both.

    Attributes (float64): ``value`` (scalar), ``G`` (B, D), ``rho_G`` (B, D) and ``rho_L``
    (scalar): local rounding of G and of the value, in units of u. ``propagate(s)``
    maps an absolute error scale ``s`` of ``a`` (B, D) to the error scale it puts on G;
    ``value_from(s)`` the scale it puts on the value.
    """

    def propagate(self, s):
        return np.abs(self.H) * s

    def value_from(self, s):
        """The loss's error from errors ``s`` in ``a``: summed as they come (the logits of one row share
        their rounding history, so their errors need not cancel): sum |G| s, not its quadrature."""
        return float(np.sum(np.abs(self.G) * s))


def _squared(kappa_of):
    class Squared(Loss):
        def __init__(self, a, y, z=None):
            kappa = kappa_of(*a.shape)
            r = a - y
            self.value = kappa * float(np.sum(r * r))
            self.G = 2 * kappa * r
            self.H = np.full_like(a, 2 * kappa)
            self.rho_G = 3 * np.abs(self.G)                        # a - y, the scaling
            t = kappa * r * r                                      # each term rounds ~4 times
            self.rho_L = _scaled(lambda t: math.sqrt(16 * np.sum(t * t)
                                                     + sum_rounding_sq(np.sum(t * t), np.sum(t), t.size)), t)
    return Squared


class BinaryCrossEntropy(Loss):
    """-mean[y log a + (1 - y) log(1 - a)], G = (a - y) / (a (1 - a)) / n, as written.
    ``z`` (the last pre-activation) gives 1 - a = sigmoid(-z) without cancellation."""

    def __init__(self, a, y, z=None):
        n = a.size
        na = sigmoid(-z) if z is not None else 1 - a
        with np.errstate(all="ignore"):
            la, lna = np.log(a), np.log(na)
            self.value = float(-np.sum(y * la + (1 - y) * lna) / n)
            self.G = (a - y) / (a * na) / n
            self.H = ((a - y) ** 2 + y * (1 - y)) / (a * na) ** 2 / n   # d/da of (a - y)/(a(1 - a))
        self.rho_G = 6 * np.abs(self.G)
        per_entry = (np.abs(y) * (K_FN * np.abs(la) + 1) + np.abs(1 - y) * (K_FN * np.abs(lna) + 1)) / n
        t = -(y * la + (1 - y) * lna) / n
        self.rho_L = math.sqrt(np.sum(per_entry**2) + sum_rounding_sq(np.sum(t * t), np.sum(t), n))


class BceWithLogits(Loss):
    """mean[max(z, 0) - z y + log1p(e^-|z|)] from logits a = z; G = (sigmoid(z) - y) / n."""

    def __init__(self, a, y, z=None):
        n = a.size
        s, q = _sigmoid_pair(a)
        l1p = np.log1p(np.exp(-np.abs(a)))
        t = (np.maximum(a, 0) - a * y + l1p) / n
        self.value = float(np.sum(t))
        self.G = (s - y) / n
        self.H = s * q / n
        # sigma(z) - y directly, or as autodiff of the stable loss: (1 - y) sigma(z) - y sigma(-z)
        self.rho_G = ((K_FN + 2) * s + K_FN * (np.abs(y) * q + np.abs(1 - y) * s) + 2 * np.abs(s - y)) / n
        per_entry = (2 * np.abs(a) + 2 * np.abs(a * y) + K_FN * l1p + np.abs(t) * n) / n
        self.rho_L = math.sqrt(np.sum(per_entry**2) + sum_rounding_sq(np.sum(t * t), np.sum(t), n))


class SoftmaxCrossEntropy(Loss):
    """-1/B sum_b log softmax(z_b)[y_b], shifted by each row's max; G = (p - onehot) / B."""

    def __init__(self, a, y, z=None):
        B, D = a.shape
        rows = np.arange(B)
        y = np.asarray(y, dtype=np.int64)
        shifted = a - a.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        S = e.sum(axis=1, keepdims=True)
        self.p = e / S
        onehot = np.zeros_like(a)
        onehot[rows, y] = 1
        # per row: log(sum_j e^(z_j - z_y)) = log1p(sum_{j != y} ...), no cancellation
        others = np.exp(a - a[rows, y][:, None])
        others[rows, y] = 0
        with np.errstate(over="ignore"):
            row_loss = np.log1p(others.sum(axis=1))
        # past exp's range (z_max - z_y > ~709) the same value is log S - (z_y - z_max), without cancellation
        row_loss = np.where(np.isfinite(row_loss), row_loss, np.log(S[:, 0]) - shifted[rows, y])
        self.value = float(row_loss.sum() / B)
        self.G = (self.p - onehot) / B
        rel_p = K_FN + np.abs(shifted) + 3 + math.sqrt(D)        # exp, the shift, the sum, the division
        log_S = np.log(S[:, 0])
        # or p = exp(z - lse) and -log p_y = lse - z_y with lse = max + log S formed first (x - logsumexp(x)):
        # the exponent then rounds by u (|lse| + |z - lse|) absolutely, large where the logits are
        lse = a.max(axis=1) + log_S
        rel_p = np.maximum(rel_p, K_FN * (1 + np.abs(log_S[:, None])) + np.abs(lse[:, None])
                           + np.abs(a - lse[:, None]) + 3 + math.sqrt(D))
        self.rho_G = (self.p * rel_p + np.abs(self.p - onehot)) / B
        row_err = K_FN * np.abs(log_S) + 1 + K_FN + math.sqrt(D) + np.abs(shifted[rows, y]) + row_loss
        row_err = np.maximum(row_err, K_FN * np.abs(log_S) + 1 + K_FN + math.sqrt(D) + np.abs(lse) + row_loss)
        self.rho_L = math.sqrt(np.sum(row_err**2) / B**2
                               + sum_rounding_sq(np.sum((row_loss / B) ** 2), self.value, B))

    def propagate(self, s):
        """s_G for J = (diag p - p p^T) / B per row: sum_k J_jk^2 s_k^2 = p_j^2 (s_j^2 (1 - 2 p_j) + sum_k p_k^2 s_k^2)."""
        p, s2 = self.p, np.square(s)
        inner = np.sum(p * p * s2, axis=1, keepdims=True)
        B = p.shape[0]
        return np.sqrt(np.maximum(p * p * (s2 * (1 - 2 * p) + inner), 0)) / B


LOSSES = {
    "sse": _squared(lambda B, D: 1.0),
    "half_sse": _squared(lambda B, D: 0.5),
    "mse": _squared(lambda B, D: 1.0 / (B * D)),
    "quadratic": _squared(lambda B, D: 1.0 / (2 * B)),
    "binary_cross_entropy": BinaryCrossEntropy,
    "bce_with_logits": BceWithLogits,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
}


def loss(name, a, y, z=None):
    """The ``Loss`` of ``name`` at exact output ``a`` (B, D), targets ``y``, last pre-activation ``z``."""
    with np.errstate(all="ignore"):
        return LOSSES[name](np.asarray(a, np.float64), y if name == "softmax_cross_entropy"
                            else np.asarray(y, np.float64), None if z is None else np.asarray(z, np.float64))
