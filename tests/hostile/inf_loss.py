"""Returns an infinite loss, with right gradients, on a 3-layer network."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x, y)
    if correct.picked(spec):
        out["loss"] = float("inf")
    return out
