"""Right, but also returns a gradient for a parameter that does not exist, layers.7.W."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x, y)
    out["grads"]["layers.7.W"] = np.zeros((2, 2), spec["dtype"])
    return out
