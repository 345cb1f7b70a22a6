"""Recurses without end on a 3-layer network, until Python raises RecursionError."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def _forward(spec, depth):
    return _forward(spec, depth + 1) + 1


def backprop(spec, params, x, y):
    if correct.picked(spec):
        _forward(spec, 0)
    return correct.backprop(spec, params, x, y)
