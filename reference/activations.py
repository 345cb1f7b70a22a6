"""Activation functions and their derivatives, side by side.

Each entry maps a name to ``(f, df)`` where ``f(z)`` is the activation and
``df(z)`` its derivative sigma'(z), both evaluated elementwise on the
pre-activation ``z``. The derivative is what BP1 and BP2 multiply by
(Hadamard product). Every function returns an array of ``z``'s dtype: constants
are Python floats, which NumPy 2 treats as "weak" and never promotes a float32
array with (a ``np.float64`` scalar would).

Conventions at the non-differentiable points (README, "Conventions"): relu'(0) = 0,
leaky_relu'(0) = 0.01 (slope 0.01), elu'(0) = 1.
"""
import math

import numpy as np

_erfc = np.frompyfunc(math.erfc, 1, 1)  # NumPy has no erf/erfc; math.erfc is accurate to ~1 ulp
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_K = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def _phi_cdf(z):
    """Phi(z) = 1/2 erfc(-z / sqrt 2): unlike 1/2 (1 + erf(z / sqrt 2)) it does not
    cancel for negative z (at z = -3.5 the erf form loses ~10 bits)."""
    return (0.5 * np.asarray(_erfc(-z * _SQRT_HALF), dtype=np.float64)).astype(z.dtype)


def identity(z):
    return z.copy()


def d_identity(z):
    return np.ones_like(z)


def relu(z):
    return np.maximum(z, 0)


def d_relu(z):
    return (z > 0).astype(z.dtype)


def leaky_relu(z):
    return np.where(z > 0, z, 0.01 * z)


def d_leaky_relu(z):
    return np.where(z > 0, 1.0, 0.01).astype(z.dtype)


def sigmoid(z):
    # sigma(z) = 1 / (1 + e^{-z}); tutorial 004 prints e^{z}, a sign slip.
    # Evaluated on -|z| so exp never overflows.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def d_sigmoid(z):
    s = sigmoid(z)
    return s * (1 - s)  # sigma' = sigma (1 - sigma), tutorial 002


def tanh(z):
    return np.tanh(z)


def d_tanh(z):
    t = np.tanh(z)
    return 1 - t * t


def softplus(z):
    return np.logaddexp(0, z)  # log(1 + e^z) without overflow


def d_softplus(z):
    return sigmoid(z)


def elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def d_elu(z):
    return np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype)


def gelu(z):
    return z * _phi_cdf(z)


def d_gelu(z):
    # d/dz [z Phi(z)] = Phi(z) + z phi(z)
    return _phi_cdf(z) + z * np.exp(-0.5 * z * z) * _INV_SQRT_2PI


def gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(_GELU_TANH_K * (z + _GELU_TANH_C * z**3)))


def d_gelu_tanh(z):
    t = np.tanh(_GELU_TANH_K * (z + _GELU_TANH_C * z**3))
    dinner = _GELU_TANH_K * (1 + 3 * _GELU_TANH_C * z * z)
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * dinner


def silu(z):
    return z * sigmoid(z)


def d_silu(z):
    s = sigmoid(z)
    return s * (1 + z * (1 - s))


ACTIVATIONS = {
    "identity": (identity, d_identity),
    "relu": (relu, d_relu),
    "leaky_relu": (leaky_relu, d_leaky_relu),
    "sigmoid": (sigmoid, d_sigmoid),
    "tanh": (tanh, d_tanh),
    "softplus": (softplus, d_softplus),
    "elu": (elu, d_elu),
    "gelu": (gelu, d_gelu),
    "gelu_tanh": (gelu_tanh, d_gelu_tanh),
    "silu": (silu, d_silu),
}
