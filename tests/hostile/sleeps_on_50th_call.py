"""Right every time, but its 50th call in a process sleeps for a minute."""
import importlib.util
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


_calls = 0


def backprop(spec, params, x, y):
    global _calls
    _calls += 1
    if _calls == 50:
        time.sleep(60)
    return correct.backprop(spec, params, x, y)
