"""Raises ValueError with a message of its own on a 3-layer network."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    if correct.picked(spec):
        raise ValueError("matrix shapes do not line up in layer 2")
    return correct.backprop(spec, params, x, y)
