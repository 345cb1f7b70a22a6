"""Right gradients, but overwrites the caller's x in place (normalises it) on every call."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x.copy(), y)
    x -= x.mean(axis=0)
    return out
