"""Calls os._exit(3) on a 3-layer network: the process ends mid-case, without a reply or a traceback."""
import importlib.util
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    if correct.picked(spec):
        os._exit(3)
    return correct.backprop(spec, params, x, y)
