"""An op case -- inputs, constants, hyper-parameters and a cotangent -- drawn from a record, saved, loaded.

``draw_case(op, family, dtype, seed)`` asks the record for inputs of ``family`` and draws the
cotangent (the upstream gradient dout) itself: standard normal entries with a random scale, never all
equal, except in family ``uniform_cotangent`` where it is all ones (what ``.sum().backward()``
sends; with gamma constant along the normalised axes, as freshly initialised, a normalisation's
exact input gradient is then 0, and so is softmax's). ``cases(op, dtypes, per_family, seed)``
is the covering set of a run: every family of the record in every dtype, ``per_family`` cases each,
so every edge family is visited on every run whatever the seed. A case saves as ``name.json`` (op,
dtype, family, seed, hyper-parameters) beside ``name.npz`` (arrays ``inputs/<name>``,
``constants/<name>``, ``cotangent``); no pickle.
"""
import json
import zlib
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import numpy as np

from bpcheck.core.spec import schema
from bpcheck.ops.algebra import Plain

__all__ = ["OpCase", "draw_case", "cases", "save", "load", "with_draw", "schema_document"]


@dataclass
class OpCase:
    op: str
    dtype: str
    family: str
    seed: int
    inputs: dict
    constants: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)
    cotangent: np.ndarray = None

    @property
    def size(self):
        """Number of input entries (what shrinking makes smaller)."""
        return sum(int(np.size(v)) for v in self.inputs.values())

    def describe(self):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in {**self.inputs, **self.constants}.items())
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyper.items())
        return f"{self.op} {self.dtype} [{self.family}] {shapes}" + (f"; {hyper}" if hyper else "")


def _rng(*parts):
    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


def _cotangent(rng, shape, dtype, family):
    if family == "uniform_cotangent":
        return np.ones(shape, dtype=dtype)
    if shape == ():
        return np.asarray(rng.choice([-1, 1]) * rng.uniform(0.25, 4.0), dtype=dtype)
    g = rng.standard_normal(shape) * rng.uniform(0.5, 2.0)
    if g.size > 1 and np.all(g == g.flat[0]):                       # never uniform outside its family
        g.flat[0] += 1.0
    return g.astype(dtype)


def with_draw(op, base, draw):
    """``base`` with another draw's inputs, constants and hyper-parameters, and a cotangent of the new
    output's shape (from the same seed): what shrinking tries."""
    cot = _cotangent(_rng(base.seed, op.name, base.family, "cotangent", draw.hyper),
                     np.shape(_out(op, draw)), base.dtype, base.family)
    return OpCase(op.name, base.dtype, base.family, base.seed, dict(draw.inputs), dict(draw.constants),
                  dict(draw.hyper), cot)


def _out(op, draw):
    ns = Plain()
    return op.forward(ns, {k: ns.input(v) for k, v in draw.inputs.items()}, draw.constants, draw.hyper)


def draw_case(op, family, dtype, seed):
    """One case of ``family`` in ``dtype`` ("float32" or "float64"), reproducible from ``seed``."""
    rng = _rng(seed, op.name, family, dtype)
    draw = op.draw(rng, family, dtype)            # a draw treats a family it does not name as plain
    cot = _cotangent(rng, np.shape(_out(op, draw)), dtype, family)
    return OpCase(op.name, dtype, family, int(seed), dict(draw.inputs), dict(draw.constants),
                  dict(draw.hyper), cot)


def cases(op, dtypes=("float32", "float64"), per_family=4, seed=0):
    """The covering set: every family of ``op`` x every dtype x ``per_family`` seeds."""
    return [draw_case(op, family, dtype, seed * 100003 + k)
            for family in op.families for dtype in dtypes for k in range(per_family)]


def save(case, path):
    """Write ``path``.json and ``path``.npz."""
    path = Path(path)
    meta = {"op": case.op, "dtype": case.dtype, "family": case.family, "seed": case.seed, "hyper": case.hyper}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    arrays = {f"inputs/{k}": v for k, v in case.inputs.items()}
    arrays.update({f"constants/{k}": v for k, v in case.constants.items()})
    np.savez(path.with_suffix(".npz"), cotangent=case.cotangent, **arrays)


def schema_document(registry):
    """The op case JSON Schema with the op and family enums of ``registry`` (name -> record):
    ``bpcheck op --schema`` prints it, and bpcheck/schemas/op_case.schema.json is its output."""
    doc = dict(schema("op_case.schema.json"))
    props = {k: dict(v) for k, v in doc["properties"].items()}
    props["op"] = {"enum": list(registry)}
    props["family"] = {"enum": sorted({f for op in registry.values() for f in op.families})}
    return {**doc, "properties": props}


@lru_cache(maxsize=None)
def _validator():
    return jsonschema.Draft202012Validator(schema("op_case.schema.json"))


def load(path):
    """The case saved at ``path`` (.json and .npz; JSON Schema ``bpcheck/schemas/op_case.schema.json``).
    Raises ValueError on a malformed file."""
    path = Path(path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        error = jsonschema.exceptions.best_match(_validator().iter_errors(meta))
        if error is not None:
            raise ValueError(f"{error.json_path}: {error.message[:200]}")
        with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        inputs = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("inputs/")}
        constants = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("constants/")}
        return OpCase(meta["op"], meta["dtype"], meta["family"], int(meta["seed"]), inputs, constants,
                      dict(meta["hyper"]), arrays["cotangent"])
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not an op case ({err})") from err
