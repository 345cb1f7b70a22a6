"""Never returns on a 3-layer network: a busy loop in Python code."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    if correct.picked(spec):
        n = 0
        while True:
            n += 1
    return correct.backprop(spec, params, x, y)
