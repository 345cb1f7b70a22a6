"""Returns NaN for every entry of the first layer's weight gradient on a 3-layer network."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x, y)
    if correct.picked(spec):
        out["grads"]["layers.0.W"] = np.full_like(out["grads"]["layers.0.W"], np.nan)
    return out
