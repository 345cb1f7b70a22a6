"""Adam with eps inside the square root: sqrt(v^ + eps) where sqrt(v^) + eps belongs (a different
optimizer for small gradients: eps = 1e-8 inside a root acts as 1e-4)."""
import numpy as np

EXPECTED = {"optimizer": "adam", "hyper": {"eps": 1e-6}, "step": 1, "hint": "eps inside the square root"}


def step(params, grads, state, hyper):
    b1, b2, lr, eps = (float(hyper[k]) for k in ("b1", "b2", "lr", "eps"))
    state = state or {"t": 0, "m": {}, "v": {}}
    t = state["t"] + 1
    m = {k: b1 * state["m"].get(k, 0) + (1 - b1) * g for k, g in grads.items()}
    v = {k: b2 * state["v"].get(k, 0) + (1 - b2) * g * g for k, g in grads.items()}
    new = {k: p - lr * (m[k] / (1 - b1 ** t)) / np.sqrt(v[k] / (1 - b2 ** t) + eps) for k, p in params.items()}
    return new, {"t": t, "m": m, "v": v}

