"""Carries <script>alert(1)</script> in an exception message (3-layer networks) and a gradient key."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


SCRIPT = "<script>alert(1)</script>"


def backprop(spec, params, x, y):
    if correct.picked(spec):
        raise RuntimeError(f"bad layer {SCRIPT}")
    out = correct.backprop(spec, params, x, y)
    out["grads"][SCRIPT] = np.zeros(1, spec["dtype"])
    return out
