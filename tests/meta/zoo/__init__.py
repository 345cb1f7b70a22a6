"""A zoo of hand-written backprop implementations of the Python contract.

Each member is one self-contained module with a ``backprop(spec, params, x, y)`` function and a
module-level ``EXPECTED`` dict saying what bpcheck should conclude about it: ``bug_*`` members each
carry one realistic bug (verdict "fail", with the class, the first wrong tensor along the chain
rule, the equation, and the generated-case family that exposes it); ``ok_*`` members are correct
implementations written in different styles (verdict "pass"). See README.md for the table.

Members are imported only when loaded: ``ok_torch_autograd`` and ``ok_jax_grad`` import torch and
JAX (the latter switches on JAX's x64 mode, as bpcheck's own JAX oracle does).
"""
import importlib
import pkgutil

MEMBERS = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith(("bug_", "ok_")))


def load(name):
    """Import and return the member module ``name`` (one of MEMBERS)."""
    if name not in MEMBERS:
        raise KeyError(f"no zoo member {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
