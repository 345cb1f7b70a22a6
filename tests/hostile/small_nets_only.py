"""Right, but declines every network of more than 200 parameters, as a scalar engine would."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)

LIMIT = 200


def backprop(spec, params, x, y):
    n = sum(p.size for p in params.values())
    if n > LIMIT:
        raise NotImplementedError(f"{n} parameters: this engine takes at most {LIMIT}")
    return correct.backprop(spec, params, x, y)
