"""Adam whose step counter is never advanced: the bias correction divides by 1 - b^1 at every step (right
at step 1, wrong from step 2 on)."""
import numpy as np

EXPECTED = {"optimizer": "adam", "hyper": {}, "step": 2, "hint": "step counter is not advanced"}


def step(params, grads, state, hyper):
    b1, b2, lr, eps = (float(hyper[k]) for k in ("b1", "b2", "lr", "eps"))
    state = state or {"t": 1, "m": {}, "v": {}}
    t = state["t"]                                       # the bug: never t + 1
    m = {k: b1 * state["m"].get(k, 0) + (1 - b1) * g for k, g in grads.items()}
    v = {k: b2 * state["v"].get(k, 0) + (1 - b2) * g * g for k, g in grads.items()}
    new = {k: p - lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps) for k, p in params.items()}
    return new, {"t": t, "m": m, "v": v}
