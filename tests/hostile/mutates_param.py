"""Right gradients, but takes an SGD step on the caller's first weight matrix in place."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    out = correct.backprop(spec, {k: v.copy() for k, v in params.items()}, x, y)
    params["layers.0.W"] -= 0.1 * out["grads"]["layers.0.W"]
    return out
