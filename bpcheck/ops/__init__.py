"""The op catalog: one record per op (``bpcheck.ops.record.Op``), found in ``bpcheck.ops.catalog``.

``REGISTRY`` maps each op's name to its record; ``get(name)`` raises ValueError naming the ops known.
A module in ``bpcheck/ops/catalog/`` that defines ``Op`` instances (or tuples of them) is all an op takes: the registry
finds them, and the truth, tolerance, judgement, adapters, CLI and generated tests follow.
"""
import importlib
import pkgutil

from bpcheck.ops import catalog
from bpcheck.ops.record import Op

__all__ = ["REGISTRY", "get", "names"]


def _discover():
    found = {}
    for info in sorted(pkgutil.iter_modules(catalog.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{catalog.__name__}.{info.name}")
        for value in vars(module).values():
            for op in (value if isinstance(value, tuple) else (value,)):
                if isinstance(op, Op):
                    if found.get(op.name, op) is not op:
                        raise RuntimeError(f"two records named {op.name!r}")
                    found[op.name] = op
    return dict(sorted(found.items()))


REGISTRY = _discover()


def names():
    return tuple(REGISTRY)


def get(name):
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(REGISTRY)}") from None
