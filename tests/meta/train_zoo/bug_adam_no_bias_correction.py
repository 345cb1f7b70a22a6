"""Adam without its bias correction: m and v used as they are (the first steps are 1 / (1 - b1) too short
in m's scale and far off in v's)."""
import numpy as np

EXPECTED = {"optimizer": "adam", "hyper": {}, "step": 1, "hint": "without bias correction"}


def step(params, grads, state, hyper):
    b1, b2, lr, eps = (float(hyper[k]) for k in ("b1", "b2", "lr", "eps"))
    state = state or {"m": {}, "v": {}}
    m = {k: b1 * state["m"].get(k, 0) + (1 - b1) * g for k, g in grads.items()}
    v = {k: b2 * state["v"].get(k, 0) + (1 - b2) * g * g for k, g in grads.items()}
    return {k: p - lr * m[k] / (np.sqrt(v[k]) + eps) for k, p in params.items()}, {"m": m, "v": v}
