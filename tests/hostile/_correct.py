"""A correct implementation to delegate to, and the rule that picks the calls a hostile one spoils."""
import importlib.util
from pathlib import Path


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


numpy_mlp = _load(Path(__file__).resolve().parents[2] / "examples" / "numpy_mlp.py", "hostile_numpy_mlp")
backprop = numpy_mlp.backprop


def picked(spec):
    """The calls to misbehave on: networks of exactly three layers. bpcheck's probes are one or
    two layers deep, and a run with max_depth=3 draws every third case this deep."""
    return len(spec["layers"]) == 3
