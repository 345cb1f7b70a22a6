"""Right, but prints thousands of lines to stdout on every call, some of them JSON and one unterminated."""
import importlib.util
import os
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)


def backprop(spec, params, x, y):
    for i in range(2000):
        print(f"epoch {i}: loss = {i / 7:.6f}")
    print("{\"id\": \"not-a-real-id\", \"result\": {\"loss\": 0, \"grads\": {}}}")
    os.write(1, b"{\"protocol\": \"bpcheck/1\"}\n")
    sys.stdout.write("half a line without its newline")
    sys.stdout.flush()
    return correct.backprop(spec, params, x, y)
