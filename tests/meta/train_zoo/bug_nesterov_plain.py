"""Nesterov momentum without its look-ahead: p <- p - lr v, the plain momentum step."""
from reference.optim import momentum

EXPECTED = {"optimizer": "nesterov", "hyper": {}, "step": 1, "hint": "look-ahead missing"}


def step(params, grads, state, hyper):
    return momentum(params, grads, state, hyper)
