"""Lifts the recursion limit and recurses through C calls on a 3-layer network until the C stack overflows."""
import importlib.util
import sys
import threading
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def _deeper(n):
    return list(map(_deeper, [n + 1]))      # each level through map(): C stack, not just Python frames


def backprop(spec, params, x, y):
    if correct.picked(spec):
        sys.setrecursionlimit(10**8)
        threading.stack_size(4 * 2**20)     # a stack of known size, whatever `ulimit -s` says
        worker = threading.Thread(target=_deeper, args=(0,))
        worker.start()
        worker.join()
    return correct.backprop(spec, params, x, y)
