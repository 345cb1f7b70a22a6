"""Calls sys.exit(0) on a 3-layer network, as a script's error handling might."""
import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    if correct.picked(spec):
        sys.exit(0)
    return correct.backprop(spec, params, x, y)
