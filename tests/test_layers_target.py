"""Every op of a CS231n-style layers module, one test each: ``--bpcheck-layers FILE`` (the pytest plugin),
the reference's ``reference/layers.py`` when none is given.

    pytest tests/test_layers_target.py --bpcheck-layers path/to/layers.py [--bpcheck-extended]

Each test is ``bpcheck.assert_op``: every edge family of the op's record in both dtypes, and on a
failure the shrunk case, the wrong tensor, its entries and the hints in the assertion message. An op
the module does not define is skipped with its name.
"""
from pathlib import Path

import pytest

import bpcheck
from bpcheck import ops
from bpcheck.opcheck.candidates import load_module

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "layers.py"


@pytest.fixture(scope="module")
def layers(request):
    given = request.config.getoption("bpcheck_layers", default=None)
    extended = request.config.getoption("bpcheck_extended", default=False) or given is None
    return load_module(given or REFERENCE), extended


@pytest.mark.parametrize("op", [name for name, record in ops.REGISTRY.items() if record.cs231n])
def test_layer(layers, op):
    module, extended = layers
    forward = ops.get(op).cs231n[0]
    if not hasattr(module, forward):
        pytest.skip(f"{module.__name__} defines no {forward}")
    bpcheck.assert_op(op, layers=module, extended=extended, name=module.__name__)
