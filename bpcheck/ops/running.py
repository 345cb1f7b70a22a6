"""The running error bound of a dense chain, one rule per op record, walked node by node.

The dense path's tolerance (``bpcheck.judge.bounds``) carries an *error scale* (units of u,
absolute, squared) through the network as any float implementation of the definitions would
compute it, with the exact values of the case at hand. Each op that can sit in that chain holds its
own step as its record's ``running`` rule: ``forward(walk, node)`` gives the node's output scale
from its inputs', ``backward(walk, node)`` the scales of its inputs' cotangents from its output's.
The walker (``bpcheck.judge.bounds``) visits the compiled spec's nodes in order, then in reverse. The equations:

forward   z = a W^T + b (affine)          s_z^2 = s_a^2 (W^2)^T + local(z)
          a = f(z) (activation)           s_a^2 = (f'(z) s_z)^2 + rho_f(z)^2
loss      G = dC/da                       s_G^2 = (H s_a)^2 + rho_G^2
backward  delta = P (.) f'(z)             s_delta^2 = (f' s_P)^2 + (P f'' s_z)^2 + (P rho_d)^2 + delta^2
          (BCE with its sigmoid: G and sigma' = a (1 - a) read the same a, delta = (a - y) / n:
           s_delta^2 = (s_a / n)^2 + (8 delta)^2)
          P = delta W (affine)            s_P^2 = s_delta^2 W^2 + local(P)
          db = sum_batch delta            s_b^2 = sum s_delta^2 + local(db)
          dW = delta^T a                  s_W^2 = s_delta^2^T a^2 + delta^2^T s_a^2 + local(dW)
          transpose                       the scale transposed

``local`` is the rounding of the sum itself (``bpcheck.core.rounding.sum_rounding_sq``: any order of
summation), ``rho`` the local rounding of each formula as written (``bpcheck.core.rounding``).
Errors from different rounding events combine in quadrature (Higham & Mary, SIAM J. Sci. Comput.
41(5), 2019); ``through`` adds the coherent share where the same rounding repeats with the data.
This is a second rounding model beside each record's ``Model`` reading (``bpcheck.ops.algebra``):
that one is first-order worst case per op, for an op checked on its own; this one is the chain's
probabilistic model, tighter on deep networks, and the one the dense path's 10^5-case campaign
measures.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bpcheck.core import rounding

__all__ = ["Rule", "Walk", "through", "AFFINE", "TRANSPOSE", "activation_rule", "loss_rule"]


@dataclass(frozen=True)
class Rule:
    """One op's step of the running bound: ``forward(walk, node)`` and ``backward(walk, node)``."""
    forward: Callable
    backward: Callable


@dataclass
class Walk:
    """The walk's state, every dict keyed by value name (the graph's leaves and nodes).

    ``value``: the exact values (in the scale's float type ``ft``; the pre-activations in float64);
    ``cot``: the exact cotangents of the affine outputs (the deltas), then of everything the walk
    reaches; ``s2`` / ``cot_s2``: the squared scales of each value and cotangent (units of u^2);
    ``u`` the dtype's unit roundoff, ``safety`` the factor of the zones where rounding may cross a
    kink, ``flush`` the subnormal floor in units of u (``flush2`` its square), ``same_a`` whether
    BCE's gradient and sigmoid' read the same rounded output; ``y`` the targets; ``loss`` the loss's scale;
    ``saved`` what a node's forward keeps for its backward."""
    ft: type
    u: float
    safety: float
    flush: float
    flush2: float
    same_a: bool
    y: np.ndarray
    value: dict
    cot: dict
    s2: dict = field(default_factory=dict)
    cot_s2: dict = field(default_factory=dict)
    loss: np.ndarray = None
    saved: dict = field(default_factory=dict)


def through(S, abs_terms, rss2, linear):
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


# ---- affine: z = x W^T + b, W the spec's (units, fan-in) matrix read through its transpose node ----

def _affine_forward(walk, n):
    a_prev, s_prev2 = walk.value[n.inputs["x"]], walk.s2[n.inputs["x"]]
    W, bias, z = walk.value[n.inputs["w"]].T, walk.value[n.inputs["b"]], walk.value[n.name]
    W2, absW = W**2, np.abs(W)
    count = W.shape[1] + 1                                  # fan_in products and the bias
    local = rounding.sum_rounding_sq(a_prev**2 @ W2.T + bias**2, z, count)
    walk.s2[n.name] = (through(z, np.abs(a_prev) @ absW.T + np.abs(bias), s_prev2 @ W2.T,
                               np.sqrt(s_prev2) @ absW.T) + local + walk.flush2)


def _affine_backward(walk, n):
    flush2 = walk.flush2
    delta, s_d2 = walk.cot[n.name], walk.cot_s2[n.name]
    a_prev, s_prev2 = walk.value[n.inputs["x"]], walk.s2[n.inputs["x"]]
    W = walk.value[n.inputs["w"]].T
    B, s_d, abs_d = delta.shape[0], np.sqrt(s_d2), np.abs(delta)
    db = delta.sum(axis=0)                                                          # BP3
    walk.cot_s2[n.inputs["b"]] = (through(db, abs_d.sum(axis=0), s_d2.sum(axis=0), s_d.sum(axis=0))
                                  + rounding.sum_rounding_sq((delta**2).sum(axis=0), db, B) + flush2)
    dW = delta.T @ a_prev                                                           # BP4
    abs_a, s_prev = np.abs(a_prev), np.sqrt(s_prev2)
    walk.cot_s2[n.inputs["w"]] = (through(dW, abs_d.T @ abs_a, s_d2.T @ a_prev**2 + (delta**2).T @ s_prev2,
                                          s_d.T @ abs_a + abs_d.T @ s_prev)
                                  + _local((delta**2).T, a_prev**2, dW, B) + flush2).T
    W2, absW = W**2, np.abs(W)                                                      # BP2
    P = delta @ W
    walk.cot[n.inputs["x"]] = P
    walk.cot_s2[n.inputs["x"]] = (through(P, abs_d @ absW, s_d2 @ W2, s_d @ absW)
                                  + _local(delta**2, W2, P, W.shape[0]) + flush2)


AFFINE = Rule(_affine_forward, _affine_backward)


def _axes(n, ndim):
    axes = n.hyper.get("axes")
    return tuple(axes) if axes is not None else tuple(range(ndim))[::-1]


def _transpose_forward(walk, n):            # of an exact parameter: its value only
    x = walk.value[n.inputs["x"]]
    walk.value[n.name] = np.transpose(x, _axes(n, x.ndim))


def _transpose_backward(walk, n):
    s2 = walk.cot_s2[n.name]
    walk.cot_s2[n.inputs["x"]] = np.transpose(s2, np.argsort(_axes(n, s2.ndim)))


TRANSPOSE = Rule(_transpose_forward, _transpose_backward)


# ---- an activation a = f(z), entry by entry ------------------------------------------------------

def activation_rule(name, kink_slope=None):
    """The step of activation ``name`` (``bpcheck.core.rounding.activation``); ``kink_slope``: the
    steeper one-sided derivative at a kink at 0, taken where z is within ``safety`` s_z of it."""
    def forward(walk, n):
        ft, flush = walk.ft, walk.flush
        z, s_z2 = walk.value[n.inputs["x"]], walk.s2[n.inputs["x"]]
        f, d1, d2, rho_f, rho_d = (np.asarray(v, ft) for v in rounding.activation(name, z))
        # an intermediate flushed or subnormal is off by up to tiny absolutely; in z sigma(z) and
        # z Phi(z) (silu's 1 / (1 + e^-z) once e^-z overflows) z multiplies it
        floor = (1 + np.abs(np.asarray(z, ft))) * flush if name in rounding.Z_TIMES else flush
        rho_f, rho_d = np.maximum(rho_f, floor), np.maximum(rho_d, floor)
        if kink_slope is not None:                                  # across the kink, the steeper side
            d1 = np.where(np.abs(z) <= np.sqrt(s_z2) * walk.u * walk.safety, kink_slope, d1)
        walk.saved[n.name] = (d1, d2, rho_d)
        walk.saved[("input", n.name)] = n.inputs["x"]
        walk.s2[n.name] = (d1**2) * s_z2 + rho_f**2

    def backward(walk, n):
        d1, d2, rho_d = walk.saved[n.name]
        P, s_P2 = walk.cot[n.name], walk.cot_s2[n.name]
        zname = n.inputs["x"]
        delta, flush2 = walk.cot[zname], walk.flush2
        fused = walk.saved.get(("fused", n.name))          # set by a loss that reads this output again
        walk.cot_s2[zname] = fused(delta) if fused is not None else (
            (d1**2) * s_P2 + (P * d2) ** 2 * np.sqrt(walk.s2[zname]) ** 2 + (P * rho_d) ** 2 + delta**2 + flush2)

    return Rule(forward, backward)


# ---- a loss C(a, y) -------------------------------------------------------------------------------

def loss_rule(name):
    """The step of loss ``name`` (``bpcheck.core.rounding.loss``), reading the producing activation's
    input z where the loss needs it (BCE's 1 - a without cancellation)."""
    def forward(walk, n):
        a_name = next(iter(n.inputs.values()))
        z_name = walk.saved.get(("input", a_name))
        z = walk.value[z_name] if z_name else None
        L = rounding.loss(name, np.asarray(walk.value[a_name], np.float64), walk.y, z)
        s_a = np.sqrt(walk.s2[a_name])
        walk.loss = np.asarray(np.hypot(L.value_from(s_a), L.rho_L))        # hypot: no overflow
        walk.saved[n.name] = L

    def backward(walk, n):
        a_name = next(iter(n.inputs.values()))
        L = walk.saved[n.name]
        walk.cot[a_name] = np.asarray(L.G, walk.ft)
        walk.cot_s2[a_name] = (np.square(L.propagate(np.sqrt(walk.s2[a_name])))
                               + np.square(np.asarray(L.rho_G, walk.ft)) + walk.flush2)
        if name == "binary_cross_entropy" and walk.same_a:
            # BCE's (a - y) / (a (1 - a)) times sigma' = a (1 - a), as written, read the same rounded a:
            # the product is (a - y) / n up to their own roundings, and a's error moves it by s_a / n.
            s_a2 = walk.s2[a_name]
            walk.saved[("fused", a_name)] = lambda delta: s_a2 / delta.size ** 2 + (8 * delta) ** 2 + walk.flush2

    return Rule(forward, backward)
