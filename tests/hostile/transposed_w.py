"""Returns every weight gradient transposed: (fan_in, units) instead of (units, fan_in)."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x, y)
    for name in out["grads"]:
        if name.endswith(".W"):
            out["grads"][name] = out["grads"][name].T.copy()
    return out
