"""Gradient clipping by each tensor's own norm where clip_grad_norm_ scales them all by the global norm."""
import numpy as np

EXPECTED = {"optimizer": "clip_sgd", "hyper": {}, "step": 1, "hint": "its own norm"}


def step(params, grads, state, hyper):
    out = {}
    for k, p in params.items():
        norm = float(np.sqrt(np.sum(np.asarray(grads[k], dtype=np.float64) ** 2)))
        scale = min(1.0, float(hyper["clip"]) / norm) if norm > 0 else 1.0
        out[k] = p - float(hyper["lr"]) * (grads[k] * scale if scale < 1 else grads[k])
    return out, state
