"""Caches 16 MiB blocks in a module-level list on a 3-layer network until memory runs out."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


_cache = []


def backprop(spec, params, x, y):
    if correct.picked(spec):
        while True:
            _cache.append(bytearray(16 * 2**20))
    return correct.backprop(spec, params, x, y)
