"""Raises on a 3-layer network with terminal escape codes (clear screen, red) and a NUL in its message."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)

MESSAGE = "\x1b[2J\x1b[31mlayer 2 failed\x1b[0m\x00"


def backprop(spec, params, x, y):
    if correct.picked(spec):
        raise ValueError(MESSAGE)
    return correct.backprop(spec, params, x, y)
