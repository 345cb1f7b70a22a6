"""Adds every call's gradients into buffers it never zeroes: right on a shape's first call only."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


_buffers = {}


def backprop(spec, params, x, y):
    out = correct.backprop(spec, params, x, y)
    for name, g in out["grads"].items():
        old = _buffers.get(name)
        _buffers[name] = g.copy() if old is None or old.shape != g.shape or old.dtype != g.dtype else old + g
        out["grads"][name] = _buffers[name].copy()
    return out
