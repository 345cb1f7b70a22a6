"""pytest plugin (entry point ``pytest11``): ``--bpcheck-target``, ``--bpcheck-examples``, ``--bpcheck-layers``.

With ``--bpcheck-target``, bpcheck's own property suite (``tests/`` of a bpcheck
checkout; it is not installed with the package) judges that implementation
instead of the NumPy reference. From any directory:

    pytest /path/to/bpcheck/tests/test_properties.py -k candidate --bpcheck-target path/to/mlp.py:backprop
    pytest /path/to/bpcheck/tests/test_properties.py -k candidate --bpcheck-target mymlp:backprop \
        --bpcheck-examples 100

(``-k candidate`` keeps the tests that judge the target; the others check the oracles.)
Each case is judged by ``bpcheck.judge.judge.judge`` with its case-level findings, as in every entry
point: inputs overwritten in place, unknown gradient keys, state kept across calls (the target is
called three times a case: the case, the same shapes with other values, the case again).

With ``--bpcheck-layers`` (a CS231n-style layers module, docs/layers_contract.md; add
``--bpcheck-extended`` if it takes the contract's extensions), ``tests/test_layers_target.py``
checks every op the module defines, one test per op, with ``bpcheck.assert_op``:

    pytest /path/to/bpcheck/tests/test_layers_target.py --bpcheck-layers path/to/layers.py

(``pytest --pyargs tests`` cannot work: ``tests`` is not an installed package.)
A ``module:function`` target resolves from the current directory, as under
``python -m pytest``. For your own test suite, call ``bpcheck.assert_backprop``
instead; for a full run with reports and a shrunk repro, ``bpcheck validate``.
"""
import os
import sys

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("bpcheck")
    group.addoption("--bpcheck-target", dest="bpcheck_target", default=None, metavar="TARGET",
                    help="implementation to check: module:function or path/to/file.py:function")
    group.addoption("--bpcheck-layers", dest="bpcheck_layers", default=None, metavar="FILE",
                    help="a CS231n-style layers module for tests/test_layers_target.py")
    group.addoption("--bpcheck-extended", dest="bpcheck_extended", action="store_true",
                    help="the layers module takes the contract's extensions (pairs, dilation)")
    group.addoption("--bpcheck-examples", dest="bpcheck_examples", default=None, type=int, metavar="N",
                    help="Hypothesis examples per property (overrides the profile)")


def pytest_configure(config):
    target = config.getoption("bpcheck_target", default=None)
    if target:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        from bpcheck.run.backends import load_function
        try:
            load_function(target)
        except ValueError as exc:  # fail once, clearly, instead of in every test
            raise pytest.UsageError(f"--bpcheck-target: {exc}") from None
    examples = config.getoption("bpcheck_examples", default=None)
    if examples is not None:
        from hypothesis import settings
        settings.register_profile("bpcheck-examples", settings(settings.default, max_examples=examples))
        settings.load_profile("bpcheck-examples")


def pytest_report_header(config):
    target = config.getoption("bpcheck_target", default=None)
    layers = config.getoption("bpcheck_layers", default=None)
    return [f"bpcheck: {what} {name}" for what, name in (("target", target), ("layers", layers)) if name]
