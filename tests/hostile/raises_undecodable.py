"""Raises on a 3-layer network naming a file whose name is not UTF-8, as os.listdir decodes it (surrogates)."""
import importlib.util
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)

NAME = os.fsdecode(b"weights-caf\xe9.npz")      # Latin-1 bytes on disk: '\udce9' in the str


def backprop(spec, params, x, y):
    if correct.picked(spec):
        raise ValueError(f"cannot load {NAME}")
    return correct.backprop(spec, params, x, y)
