"""Optimizers as records: one update rule written once, read as the exact update and as its rounding model.

An ``Optimizer`` writes ``update(ns, p, g, state, hyper, t) -> (p_new, state_new)`` for one parameter
tensor against the ``bpcheck.ops.algebra`` namespace (``Exact``: the exact update of the candidate's
own p, g and state; ``Model``: the rounding bound of an implementation in the dtype; ``Plain``: float64),
where t = 1, 2, ... is the step and ``state`` a dict of arrays (empty at t = 1 means "fresh": each rule
initialises its own). ``global_scale(ns, grads, hyper)`` is for rules that look at every tensor at once
(clipping by the global norm). Conventions are other documented forms of the same optimizer (class
``convention``: passes, with the note); slips are typical wrong updates, with the hint they give.

Hyper-parameter constants (lr, mu, 1 - b^t, ...) are the float64 numbers the frameworks compute them as
(Python floats), each rounded once to the dtype where it meets a tensor. The rules (PyTorch's
torch.optim documentation gives each as pseudocode; lr the learning rate):

- ``sgd``: p <- p - lr g (tutorials 002 and 003: w <- w - alpha grad, A <- A - delta dL/dA);
  ``weight_decay`` lambda adds lambda p to g first (L2 in the gradient, torch.optim.SGD).
- ``momentum``: v <- mu v + g, p <- p - lr v (torch.optim.SGD with momentum; v = g at t = 1).
  Convention ``velocity_lr``: v <- mu v - lr g, p <- p + v (CS231n's sgd_momentum, Sutskever et al.
  2013), the same parameters in exact arithmetic for a constant lr, its v = -lr times torch's.
- ``nesterov``: v <- mu v + g, p <- p - lr (g + mu v) (torch.optim.SGD with nesterov=True).
- ``adam``: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, m^ = m / (1 - b1^t), v^ = v / (1 - b2^t),
  p <- p - lr m^ / (sqrt(v^) + eps) (Kingma & Ba 2015, Algorithm 1; torch.optim.Adam; optax.adam).
  Convention ``eps_hat``: p <- p - lr_t m / (sqrt(v) + eps) with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
  (the paper's "more efficient" ordering, Section 2; TensorFlow 1's Adam): eps sits outside the bias
  correction. ``weight_decay`` adds lambda p to g (L2 in the gradient, torch.optim.Adam).
- ``adamw``: p <- p (1 - lr lambda), then the Adam step (decoupled weight decay, Loshchilov & Hutter
  2019; torch.optim.AdamW; optax.adamw applies it as p - lr (step + lambda p), the same number).
- ``clip_sgd``: sgd after scaling every gradient by min(1, c / ||g||) with ||g|| the norm over all
  tensors together (torch.nn.utils.clip_grad_norm_ then SGD; optax.clip_by_global_norm).
"""
from dataclasses import dataclass
from typing import Callable

__all__ = ["Optimizer", "OPTIMIZERS", "get"]


@dataclass(frozen=True)
class Optimizer:
    """``update(ns, p, g, state, hyper, t) -> (p, state)``; ``hyper``: defaults; ``state_names``: what the
    state holds (judged like the parameters); ``global_scale(ns, grads, hyper) -> scale or None``;
    ``conventions``: ((name, note, update), ...); ``slips``: ((name, hint, update), ...); ``clip_slip(ns, g,
    hyper)``: the per-tensor scale a slip uses in place of the global one."""
    name: str
    definition: str
    update: Callable
    hyper: dict
    state_names: tuple = ()
    global_scale: Callable = None
    conventions: tuple = ()
    slips: tuple = ()
    clip_slip: Callable = None


def _c(ns, x):
    return ns.const(x)


def _decayed(ns, p, g, h):
    """g + lambda p: L2 in the gradient (a rule's ``weight_decay``), or g itself."""
    return g + _c(ns, h["weight_decay"]) * p if h.get("weight_decay") else g


# --- SGD and its momentum forms -----------------------------------------------------------------

def _sgd(ns, p, g, s, h, t):
    return p - _c(ns, h["lr"]) * _decayed(ns, p, g, h), {}


def _momentum(ns, p, g, s, h, t, *, nesterov=False):
    g = _decayed(ns, p, g, h)
    v = g if "v" not in s else _c(ns, h["mu"]) * s["v"] + g
    step = g + _c(ns, h["mu"]) * v if nesterov else v
    return p - _c(ns, h["lr"]) * step, {"v": v}


def _velocity_lr(ns, p, g, s, h, t):
    v = -_c(ns, h["lr"]) * g if "v" not in s else _c(ns, h["mu"]) * s["v"] - _c(ns, h["lr"]) * g
    return p + v, {"v": v}


def _momentum_no_first_step(ns, p, g, s, h, t):
    """v starts at 0: v = (1 - 0) ... = g anyway; the slip is v <- mu v + (1 - mu) g (a dampened EMA)."""
    v = (1 - _c(ns, h["mu"])) * g if "v" not in s else _c(ns, h["mu"]) * s["v"] + (1 - _c(ns, h["mu"])) * g
    return p - _c(ns, h["lr"]) * v, {"v": v}


# --- Adam ----------------------------------------------------------------------------------------

def _moments(ns, g, s, h):
    b1, b2 = _c(ns, h["b1"]), _c(ns, h["b2"])
    m = (1 - b1) * g if "m" not in s else b1 * s["m"] + (1 - b1) * g
    v = (1 - b2) * (g * g) if "v" not in s else b2 * s["v"] + (1 - b2) * (g * g)
    return m, v


def _adam(ns, p, g, s, h, t, *, decoupled=False, correct=True, eps_inside=False):
    if decoupled:
        p = p * (1 - _c(ns, h["lr"]) * _c(ns, h["weight_decay"]))
    g = g if decoupled else _decayed(ns, p, g, h)
    m, v = _moments(ns, g, s, h)
    if correct:
        m_hat, v_hat = m / (1 - _c(ns, h["b1"] ** t)), v / (1 - _c(ns, h["b2"] ** t))
    else:
        m_hat, v_hat = m, v
    denom = ns.sqrt(v_hat + _c(ns, h["eps"])) if eps_inside else ns.sqrt(v_hat) + _c(ns, h["eps"])
    return p - _c(ns, h["lr"]) * m_hat / denom, {"m": m, "v": v}


def _adam_eps_hat(ns, p, g, s, h, t):
    g = _decayed(ns, p, g, h)
    m, v = _moments(ns, g, s, h)
    lr_t = _c(ns, h["lr"]) * ns.sqrt(_c(ns, 1 - h["b2"] ** t)) / _c(ns, 1 - h["b1"] ** t)
    return p - lr_t * m / (ns.sqrt(v) + _c(ns, h["eps"])), {"m": m, "v": v}


# --- clipping by the global norm -----------------------------------------------------------------

def _global_scale(ns, grads, h):
    """min(1, c / ||g||), ||g|| over every tensor (torch.nn.utils.clip_grad_norm_ adds 1e-6 to the norm:
    a convention below)."""
    total = None
    for g in grads.values():
        s = ns.sum(g * g)
        total = s if total is None else total + s
    norm = ns.sqrt(total)
    return ns.either(_c(ns, h["clip"]) / norm, _c(ns, h["clip"]) / (norm + _c(ns, 1e-6)))


def _tensor_scale(ns, g, h):
    """min(1, c / ||g||) of one tensor alone (the slip ``clip_per_tensor``)."""
    return _c(ns, h["clip"]) / ns.sqrt(ns.sum(g * g))


def _clip_sgd(ns, p, g, s, h, t):
    return p - _c(ns, h["lr"]) * g, {}


OPTIMIZERS = {o.name: o for o in (
    Optimizer("sgd", "p <- p - lr (g + lambda p)", _sgd, {"lr": 0.1, "weight_decay": 0.0},
              slips=(("decay_twice", "L2 applied twice: in the gradient and again in the update (Nielsen's "
                                     "network2 with lambda in both)",
                      lambda ns, p, g, s, h, t: (p * (1 - _c(ns, h["lr"]) * _c(ns, h["weight_decay"]))
                                                 - _c(ns, h["lr"]) * _decayed(ns, p, g, h), {})),)),
    Optimizer("momentum", "v <- mu v + g, p <- p - lr v", _momentum, {"lr": 0.1, "mu": 0.9, "weight_decay": 0.0},
              state_names=("v",),
              conventions=(("velocity_lr", "v <- mu v - lr g, p <- p + v (CS231n's sgd_momentum; Sutskever et "
                                           "al. 2013): the same parameters, v = -lr times torch's", _velocity_lr),),
              slips=(("dampened", "v <- mu v + (1 - mu) g: an exponential average where torch's momentum sums "
                                  "(dampening = mu)", _momentum_no_first_step),)),
    Optimizer("nesterov", "v <- mu v + g, p <- p - lr (g + mu v)",
              lambda ns, p, g, s, h, t: _momentum(ns, p, g, s, h, t, nesterov=True),
              {"lr": 0.1, "mu": 0.9, "weight_decay": 0.0}, state_names=("v",),
              slips=(("plain_momentum", "Nesterov's look-ahead missing: p <- p - lr v", _momentum),)),
    Optimizer("adam", "m, v moment averages; p <- p - lr m^ / (sqrt(v^) + eps), bias-corrected", _adam,
              {"lr": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0}, state_names=("m", "v"),
              conventions=(("eps_hat", "eps outside the bias correction: lr_t m / (sqrt(v) + eps), lr_t = lr "
                                       "sqrt(1 - b2^t) / (1 - b1^t) (Kingma & Ba, Section 2; TensorFlow 1)",
                            _adam_eps_hat),),
              slips=(("no_bias_correction", "Adam without bias correction: m, v used as they are (m^ = m)",
                      lambda ns, p, g, s, h, t: _adam(ns, p, g, s, h, t, correct=False)),
                     ("eps_inside_sqrt", "eps inside the square root: sqrt(v^ + eps) where sqrt(v^) + eps belongs",
                      lambda ns, p, g, s, h, t: _adam(ns, p, g, s, h, t, eps_inside=True)))),
    Optimizer("adamw", "p <- p (1 - lr lambda), then the Adam step (decoupled weight decay)",
              lambda ns, p, g, s, h, t: _adam(ns, p, g, s, h, t, decoupled=True),
              {"lr": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.01}, state_names=("m", "v"),
              slips=(("l2_in_gradient", "weight decay as L2 in the gradient (Adam's weight_decay) where AdamW "
                                        "decouples it", lambda ns, p, g, s, h, t: _adam(ns, p, g, s, h, t)),)),
    Optimizer("clip_sgd", "g <- g min(1, c / ||g||_global), then p <- p - lr g", _clip_sgd,
              {"lr": 0.1, "clip": 0.05}, global_scale=_global_scale,
              slips=(("clip_per_tensor", "each tensor clipped by its own norm where the global norm belongs",
                      _clip_sgd),), clip_slip=_tensor_scale),
)}


def get(name):
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None

