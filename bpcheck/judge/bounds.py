"""The rounding error a correct implementation may make, tensor by tensor: a running error bound.

Given a case and its exact values (the truth's z_i, a_i and delta_i), this
module carries an *error scale* through the network as any float
implementation of the definitions would compute it, in the case's dtype:

forward   z_i = a_{i-1} W_i^T + b_i       s_z^2 = s_{a,i-1}^2 (W_i^2)^T + local(z_i)
          a_i = f(z_i)                    s_a^2 = (f'(z) s_z)^2 + rho_f(z)^2
loss      G = dC/da                       s_G^2 = (H s_a)^2 + rho_G^2
BP1/BP2   delta = P (.) f'(z)             s_delta^2 = (f' s_P)^2 + (P f'' s_z)^2 + (P rho_d)^2 + delta^2
          (BCE with its sigmoid: G and sigma' = a (1 - a) read the same a, delta = (a - y) / n:
           s_delta^2 = (s_a / n)^2 + (8 delta)^2)
          P = G (BP1) or delta_{i+1} W_{i+1} (BP2): s_P^2 = s_delta^2 W^2 + local(P)
BP3       db_i = sum_batch delta_i        s_b^2 = sum s_delta^2 + local(db)
BP4       dW_i = delta_i^T a_{i-1}        s_W^2 = s_delta^2^T a^2 + delta^2^T s_a^2 + local(dW)
          dC/dx = delta_0 W_0             s_x^2 = s_delta^2 W^2 + local(dC/dx)

Everything is in units of u and absolute. ``local`` is the rounding of the sum
itself (``rounding.sum_rounding_sq``: any order of summation), ``rho`` the
local rounding of each formula as written (``bpcheck.core.rounding``: the textbook
and the stable form, whichever is worse, including the terms that cancel).

Errors from different rounding events are independent and combine in
quadrature (the probabilistic model of Higham & Mary, SIAM J. Sci. Comput.
41(5), 2019): propagated through a matrix they grow like the matrix's
Frobenius norm, not like |W|, which would compound by sqrt(width) per layer.
Each single rounding is bounded by its worst case, and the tolerance is
``SAFETY`` times this scale (``bpcheck.judge.compare.TOLERANCE``) -- a bound that
every implementation of the definition meets, measured on 10^5 cases
(``bpcheck selftest --false-alarms``).

``limits`` names what the definition itself cannot evaluate in the dtype on
this case (a sigmoid output that rounds to exactly 1.0 under BCE's
log(1 - a); softplus's e^z past the dtype's overflow): there a NaN or inf is
the definition's, not the implementation's (class ``dtype_limit``).
"""
import math
from dataclasses import dataclass, field

import numpy as np

from bpcheck.core import rounding

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}


@dataclass
class Limit:
    """The definition cannot be evaluated in the dtype from ``layer`` on (len(layers): the loss)."""
    reason: str
    hint: str
    layer: int

    def reaches(self, row):
        """Whether a row's tensor is computed from the limited value."""
        return row["tensor"] != "activation" or row["layer"] >= self.layer


@dataclass
class Bounds:
    """Error scales in units of u (absolute), keyed like compare rows: (layer, tensor)."""
    scale: dict = field(default_factory=dict)      # (layer | None, tensor) -> array, units of u
    z_scale: list = field(default_factory=list)    # s_z per layer (B, units), units of u
    limits: list = field(default_factory=list)     # [Limit]: where the definition is not finite

    def norm(self, layer, tensor):
        s = self.scale.get((layer, tensor))
        return math.inf if s is None else rounding.norm2(s)


def _through(S, abs_terms, rss2, linear):
    """Squared scale of the propagated error of a sum S = sum_k t_k whose terms carry errors s_k.

    Independent errors add in quadrature (``rss2`` = sum s_k^2). Errors that repeat with the
    data -- identical rows of x, equal weights: the same rounding made again -- add like the
    terms themselves: their share is the terms' mean relative error, (sum s_k) / (sum |t_k|),
    times |S|. For terms of random sign that is about the quadrature sum again; for B copies
    of one row it is B s, where quadrature would say sqrt(B) s.
    """
    with np.errstate(all="ignore"):
        coherent = np.where(abs_terms > 0, linear * np.abs(S) / abs_terms, 0.0)
    return np.maximum(rss2, coherent**2)


def _local(A2, B2, AB, n):
    """Squared rounding scale of the n-term products A @ B, from A^2 @ B^2 and A @ B."""
    return rounding.sum_rounding_sq(A2 @ B2, AB, n)


def running_bounds(case, truth, *, safety=1.0, same_a=True):
    """``Bounds`` for every tensor of ``case`` from the exact values in ``truth``.

    ``truth`` holds float64 ``pre_activations``, ``activations`` and ``deltas`` keyed
    "layers.{i}" (the arbiter's). ``safety`` scales the zones where rounding may cross a
    threshold: a relu input within ``safety`` s_z of its kink, an overflow within reach.
    ``same_a``: BCE's gradient and sigmoid' read the same rounded output (the definitions as
    written); False for a formula where they do not cancel (a clamped denominator). Raises KeyError for an unknown activation or loss.

    The squared scales are carried in float64; where one overflows (a tensor beyond ~1e154,
    as the exp_overflow cases reach in float64) or may underflow (an exact value below
    ``TINY``: a silu output of 1e-186 past exp's range) the bound is carried again in
    extended precision (np.longdouble: 80-bit on x86-64, exponent range 10^4932) and
    rounded back to float64 -- an overflowing bound is never read as "anything goes", nor
    an underflowed one as "exact".
    """
    out = _bounds(case, truth, safety, same_a, np.float64)
    wide = not all(np.isfinite(v).all() for v in out.scale.values()) or _tiny(truth)
    if wide and np.finfo(np.longdouble).maxexp > 1024:
        out = _bounds(case, truth, safety, same_a, np.longdouble)
        with np.errstate(over="ignore"):
            out.scale = {key: value.astype(np.float64) for key, value in out.scale.items()}
            out.z_scale = [value.astype(np.float64) for value in out.z_scale]
    for key, value in out.scale.items():     # inf x 0 where the first-order model breaks down: unbounded
        out.scale[key] = np.where(np.isnan(value), np.inf, value)
    return out


TINY = 1e-120      # an exact value below this (nonzero) may have a squared scale below float64's range


def _tiny(truth):
    """Whether some nonzero exact value is below ``TINY``."""
    arrays = [truth.get("loss")] + [v for kind in ("pre_activations", "activations", "deltas", "grads")
                                    for v in (truth.get(kind) or {}).values()] + [truth.get("input_grad")]
    for v in arrays:
        if v is not None:
            m = np.abs(np.asarray(v, np.float64))
            if np.any((m > 0) & (m < TINY)):
                return True
    return False


def _bounds(case, truth, safety, same_a, ft):
    """``running_bounds`` with the scales carried in float type ``ft``."""
    spec = case.spec
    u = UNIT_ROUNDOFF[spec["dtype"]]
    n_layers = len(spec["layers"])
    W = [np.asarray(case.params[f"layers.{i}.W"], ft) for i in range(n_layers)]
    bias = [np.asarray(case.params[f"layers.{i}.b"], ft) for i in range(n_layers)]
    z = [np.asarray(truth["pre_activations"][f"layers.{i}"], np.float64) for i in range(n_layers)]
    a = [np.asarray(truth["activations"][f"layers.{i}"], ft) for i in range(n_layers)]
    x = np.asarray(case.x, ft)
    out = Bounds()
    acts = []
    # Every computed value may be flushed or rounded in the subnormal range, an absolute error up to
    # the dtype's smallest normal number: in units of u, ``flush`` (negligible unless values are that
    # small; a derivative flushed to 0 then moves delta by |P| tiny, which relative rounding misses).
    flush = ft(float(np.finfo(spec["dtype"]).tiny)) / ft(u)
    flush2 = flush * flush
    with np.errstate(all="ignore"):
        # ---- forward
        s_a_prev2, a_prev = np.zeros_like(x), x
        s_a2 = []
        for i, layer in enumerate(spec["layers"]):
            W2, absW = W[i] ** 2, np.abs(W[i])
            n = W[i].shape[1] + 1                                   # fan_in products and the bias
            local = rounding.sum_rounding_sq(a_prev**2 @ W2.T + bias[i] ** 2, z[i], n)
            s_z2 = _through(z[i], np.abs(a_prev) @ absW.T + np.abs(bias[i]),
                            s_a_prev2 @ W2.T, np.sqrt(s_a_prev2) @ absW.T) + local + flush2
            f, d1, d2, rho_f, rho_d = (np.asarray(v, ft) for v in rounding.activation(layer["activation"], z[i]))
            # an intermediate flushed or subnormal is off by up to tiny absolutely; in z sigma(z) and
            # z Phi(z) (silu's 1 / (1 + e^-z) once e^-z overflows) z multiplies it
            floor = (1 + np.abs(np.asarray(z[i], ft))) * flush if layer["activation"] in rounding.Z_TIMES else flush
            rho_f, rho_d = np.maximum(rho_f, floor), np.maximum(rho_d, floor)
            if layer["activation"] in ("relu", "leaky_relu"):       # across the kink, the steeper side
                d1 = np.where(np.abs(z[i]) <= np.sqrt(s_z2) * u * safety, 1.0, d1)
            acts.append((d1, d2, rho_d))
            out.z_scale.append(np.sqrt(s_z2))
            s_a_prev2 = (d1**2) * s_z2 + rho_f**2
            s_a2.append(s_a_prev2)
            out.scale[(i, "activation")] = np.sqrt(s_a_prev2)
            a_prev = a[i]
        _limits(case, z, a, s_a2, out, u, safety)

        # ---- loss and BP1
        L = rounding.loss(spec["loss"], np.asarray(a[-1], np.float64), case.y, z[-1])
        s_G2 = np.square(L.propagate(np.sqrt(s_a2[-1]))) + np.square(np.asarray(L.rho_G, ft)) + flush2
        out.scale[(None, "loss")] = np.asarray(np.hypot(L.value_from(np.sqrt(s_a2[-1])), L.rho_L))  # no overflow
        P, s_P2 = np.asarray(L.G, ft), s_G2
        for i in reversed(range(n_layers)):
            d1, d2, rho_d = acts[i]
            delta = np.asarray(truth["deltas"][f"layers.{i}"], ft)
            s_d2 = (d1**2) * s_P2 + (P * d2) ** 2 * out.z_scale[i] ** 2 + (P * rho_d) ** 2 + delta**2 + flush2
            if i == n_layers - 1 and spec["loss"] == "binary_cross_entropy" and same_a:
                # BCE's (a - y) / (a (1 - a)) times sigma' = a (1 - a), as written, read the same rounded a:
                # the product is (a - y) / n up to their own roundings, and a's error moves it by s_a / n.
                s_d2 = s_a2[i] / delta.size ** 2 + (8 * delta) ** 2 + flush2
            out.scale[(i, "delta")] = np.sqrt(s_d2)
            a_prev = x if i == 0 else a[i - 1]
            s_prev2 = np.zeros_like(x) if i == 0 else s_a2[i - 1]
            B, s_d, abs_d = delta.shape[0], np.sqrt(s_d2), np.abs(delta)
            # BP3
            db = delta.sum(axis=0)
            out.scale[(i, "b")] = np.sqrt(
                _through(db, abs_d.sum(axis=0), s_d2.sum(axis=0), s_d.sum(axis=0))
                + rounding.sum_rounding_sq((delta**2).sum(axis=0), db, B) + flush2)
            # BP4
            dW = delta.T @ a_prev
            abs_a, s_prev = np.abs(a_prev), np.sqrt(s_prev2)
            out.scale[(i, "W")] = np.sqrt(
                _through(dW, abs_d.T @ abs_a, s_d2.T @ a_prev**2 + (delta**2).T @ s_prev2,
                         s_d.T @ abs_a + abs_d.T @ s_prev)
                + _local((delta**2).T, a_prev**2, dW, B) + flush2)
            # BP2 (or the input gradient below layer 0)
            W2, absW = W[i] ** 2, np.abs(W[i])
            P = delta @ W[i]
            s_P2 = (_through(P, abs_d @ absW, s_d2 @ W2, s_d @ absW)
                    + _local(delta**2, W2, P, W[i].shape[0]) + flush2)
            if i == 0:
                out.scale[(None, "input_grad")] = np.sqrt(s_P2)
    return out


# What the definition as written cannot evaluate in a dtype: (test, reason, hint).
def _limits(case, z, a, s_a2, out, u, safety):
    spec, dtype = case.spec, case.spec["dtype"]
    info = np.finfo(dtype)
    log_max = math.log(float(info.max))
    for i, layer in enumerate(spec["layers"]):
        if layer["activation"] == "softplus":
            if np.any(z[i] + safety * out.z_scale[i] * u >= log_max):
                out.limits.append(Limit(
                    f"layer {i} softplus: z reaches {float(z[i].max()):.4g}, past log(max {dtype}) = "
                    f"{log_max:.4g}, where log(1 + e^z) overflows",
                    "np.logaddexp(0, z) (or max(z, 0) + log1p(exp(-|z|))) stays finite", i))
    if spec["loss"] == "binary_cross_entropy":
        s = np.nan_to_num(np.sqrt(s_a2[-1]), nan=np.inf) * u * safety
        na = rounding.sigmoid(-z[-1])
        if np.any(~(na > s + u)) or np.any(~(a[-1] > s + float(info.tiny))):
            out.limits.append(Limit(
                f"binary_cross_entropy: a sigmoid output lies within rounding of "
                f"{'1' if np.any(~(na > s + u)) else '0'} in {dtype}, where log(1 - a) or log(a) is infinite",
                "use bce_with_logits on the logits, or clamp as torch does (log >= -100)", len(spec["layers"])))
