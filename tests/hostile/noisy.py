"""Adds random noise of relative size 1e-3 to every gradient on every call."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


_rng = np.random.default_rng()


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x, y)
    for name, g in out["grads"].items():
        out["grads"][name] = (g * (1 + 1e-3 * _rng.standard_normal(g.shape))).astype(g.dtype)
    return out
