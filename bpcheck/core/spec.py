"""Spec, Case and Result: the shared vocabulary, validated, with JSON + .npz I/O.

A *spec* is the JSON-serialisable architecture (README, "Conventions"); a *case* is a spec
with concrete ``params``, ``x`` and ``y``; a *result* is what a backend returns.
Validation raises ``SpecError`` / ``ResultError`` with one message naming the
offending field, so a person can fix it without reading this code.
"""
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus",
               "elu", "gelu", "gelu_tanh", "silu")
LOSSES = ("sse", "half_sse", "mse", "quadratic", "binary_cross_entropy",
          "bce_with_logits", "softmax_cross_entropy")
DTYPES = ("float32", "float64")
# Losses that need a particular last activation (the rest accept any).
LAST_ACTIVATION = {"binary_cross_entropy": "sigmoid", "bce_with_logits": "identity",
                   "softmax_cross_entropy": "identity"}
MAX_BATCH = 65536                # documented limits: the rest are in bpcheck/schemas/case.schema.json


class SpecError(ValueError):
    """A malformed spec or case."""


class ResultError(ValueError):
    """A backend returned something that does not follow the Result contract."""


@lru_cache(maxsize=None)
def schema(name):
    return json.loads(resources.files("bpcheck").joinpath("schemas").joinpath(name).read_text())


def _path(error):
    return "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def validate_spec(spec):
    """Return ``spec`` if it is valid, else raise SpecError naming the field."""
    sub = {**schema("case.schema.json")["$defs"]["spec"], "$defs": schema("case.schema.json")["$defs"]}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(sub).iter_errors(spec))
    if error is not None:
        raise SpecError(f"{_path(error)}: {error.message}")
    need = LAST_ACTIVATION.get(spec["loss"])
    last = spec["layers"][-1]["activation"]
    if need and last != need:
        raise SpecError(f"spec.layers[{len(spec['layers']) - 1}].activation: loss {spec['loss']!r} "
                        f"needs a last activation of {need!r}, got {last!r}")
    if spec["loss"] == "softmax_cross_entropy" and spec["layers"][-1]["units"] < 2:
        raise SpecError("spec.layers[-1].units: softmax_cross_entropy needs at least 2 classes")
    return spec


def param_shapes(spec):
    shapes, fan_in = {}, spec["input_dim"]
    for i, layer in enumerate(spec["layers"]):
        shapes[f"layers.{i}.W"] = (layer["units"], fan_in)
        shapes[f"layers.{i}.b"] = (layer["units"],)
        fan_in = layer["units"]
    return shapes


def n_params(spec):
    """The number of parameters (every W and b entry) of a network."""
    return sum(int(np.prod(shape)) for shape in param_shapes(spec).values())


def y_shape(spec, batch):
    if spec["loss"] == "softmax_cross_entropy":
        return (batch,)
    return (batch, spec["layers"][-1]["units"])


@dataclass
class Case:
    spec: dict
    params: dict
    x: np.ndarray
    y: np.ndarray
    id: str = "case"
    meta: dict = field(default_factory=dict)

    @property
    def batch(self):
        return self.x.shape[0]

    def astype(self, dtype):
        """The same case in another dtype (params and x cast; y cast unless it holds classes)."""
        spec = {**self.spec, "dtype": dtype}
        y = self.y if spec["loss"] == "softmax_cross_entropy" else self.y.astype(dtype)
        return Case(spec, {k: v.astype(dtype) for k, v in self.params.items()},
                    self.x.astype(dtype), y, self.id, dict(self.meta))


def validate_case(case):
    """Check spec, array names, shapes, dtypes and finiteness; raise SpecError."""
    validate_spec(case.spec)
    dtype = np.dtype(case.spec["dtype"])
    if case.x.ndim != 2 or not 1 <= case.x.shape[0] <= MAX_BATCH:
        raise SpecError(f"x: shape {case.x.shape}, expected (batch, input_dim) with 1 <= batch <= {MAX_BATCH}")
    expected = param_shapes(case.spec)
    missing, extra = expected.keys() - case.params.keys(), case.params.keys() - expected.keys()
    if missing or extra:
        raise SpecError(f"params: missing {sorted(missing)}, unexpected {sorted(extra)}")
    arrays = {**case.params, "x": case.x, "y": case.y}
    shapes = {**expected, "x": (case.x.shape[0] if case.x.ndim else -1, case.spec["input_dim"]),
              "y": y_shape(case.spec, case.x.shape[0] if case.x.ndim else -1)}
    for name, arr in arrays.items():
        if arr.shape != tuple(shapes[name]):
            raise SpecError(f"{name}: shape {arr.shape}, expected {tuple(shapes[name])}")
        if name == "y" and case.spec["loss"] == "softmax_cross_entropy":
            if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= case.spec["layers"][-1]["units"]:
                raise SpecError("y: softmax_cross_entropy needs integer classes in [0, units)")
            continue
        if arr.dtype != dtype:
            raise SpecError(f"{name}: dtype {arr.dtype}, spec says {dtype}")
        if not np.all(np.isfinite(arr)):
            raise SpecError(f"{name}: contains NaN or infinity")
    if case.spec["loss"] == "binary_cross_entropy" and (case.y.min() < 0 or case.y.max() > 1):
        raise SpecError("y: binary_cross_entropy targets must lie in [0, 1]")
    return case


def validate_result(result, case, *, who="implementation", known_problems=()):
    """Check a backend's reply against the Result contract; return it with arrays as ndarrays.

    What is not numbers -- not a dict, no "loss" or "grads", a loss that is not a number,
    arrays of strings or objects -- raises ResultError: the reply cannot be judged. What is
    numbers of the wrong kind is a discrepancy, listed in the returned result's "problems"
    as (layer, tensor, message): a gradient of the wrong shape or dtype, a missing gradient.
    Gradient keys that name no parameter are listed in "unknown_keys". NumPy arrays (and
    anything with a ``dtype``: torch or jax arrays) must have the spec's dtype exactly;
    nested lists and Python numbers are read as the spec's dtype. ``known_problems``
    (found earlier, e.g. in a worker process) are kept, and their tensors not reported again.
    """
    if not isinstance(result, dict):
        raise ResultError(f"{who} returned {type(result).__name__}, expected a dict with 'loss' and 'grads'")
    for key in ("loss", "grads"):
        if key not in result:
            raise ResultError(f"{who} result has no {key!r} (keys: {sorted(map(str, result))})")
    try:
        loss = float(np.asarray(result["loss"]).reshape(()))
    except (TypeError, ValueError):
        raise ResultError(f"{who} result 'loss' is not a number: {result['loss']!r:.80}") from None
    grads = result["grads"]
    if not isinstance(grads, dict):
        raise ResultError(f"{who} result 'grads' is {type(grads).__name__}, expected a dict")
    dtype = np.dtype(case.spec["dtype"])
    out = {"loss": loss, "grads": {}, "problems": list(known_problems),
           "unknown_keys": sorted(str(k) for k in grads if k not in param_shapes(case.spec))}

    def take(value, shape, label, layer, tensor):
        arr, problem = _array(value, shape, dtype, label, who)
        if problem and tensor is not None:          # intermediates bpcheck does not compare: dropped
            out["problems"].append((layer, tensor, problem))
        return arr

    for name, shape in param_shapes(case.spec).items():
        _, i, tensor = name.split(".")
        if any(p[0] == int(i) and p[1] == tensor for p in known_problems):
            continue
        if name not in grads:
            out["problems"].append((int(i), tensor, f"no gradient {name!r} in the result "
                                                    f"(keys: {sorted(map(str, grads))})"))
            continue
        arr = take(grads[name], shape, f"grads[{name!r}]", int(i), tensor)
        if arr is not None:
            out["grads"][name] = arr
    if result.get("input_grad") is not None:
        arr = take(result["input_grad"], case.x.shape, "input_grad", None, "input_grad")
        if arr is not None:
            out["input_grad"] = arr
    for kind, tensor in (("pre_activations", None), ("activations", "activation"), ("deltas", "delta"),
                         ("local_derivatives", None)):
        if isinstance(result.get(kind), dict):
            out[kind] = {}
            for i, layer in enumerate(case.spec["layers"]):
                name = f"layers.{i}"
                if name in result[kind]:
                    arr = take(result[kind][name], (case.batch, layer["units"]), f"{kind}[{name!r}]", i, tensor)
                    if arr is not None:
                        out[kind][name] = arr
    return out


def _array(value, shape, dtype, name, who):
    """(array, problem): ``value`` as an ndarray; a problem message for a wrong shape or dtype.
    ResultError for what is not numbers."""
    try:
        if hasattr(value, "dtype") and not isinstance(value, np.ndarray):
            value = np.asarray(value)                      # torch / jax / array-likes keep their dtype
        arr = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise ResultError(f"{who} result {name} is not numeric") from None
    if arr.dtype.kind not in "fiub":
        raise ResultError(f"{who} result {name} has dtype {arr.dtype}, not numbers")
    problems = []
    if arr.shape != tuple(shape):
        hint = " (the transpose of the expected shape)" if arr.shape == tuple(shape)[::-1] else ""
        problems.append(f"shape {arr.shape}, expected {tuple(shape)}{hint}")
    if arr.dtype != dtype:
        problems.append(f"dtype {arr.dtype}, expected {dtype} (the spec's dtype)")
    if problems:
        return None, f"{name} has " + " and ".join(problems)
    return arr, None


# ---- JSON + .npz I/O --------------------------------------------------------

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def save_case(case, directory):
    """Write ``<id>.json`` and ``<id>.npz`` into ``directory``; return the JSON path."""
    if not _ID.match(case.id):
        raise SpecError(f"id: {case.id!r} must match {_ID.pattern}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {**{f"params/{k}": v for k, v in case.params.items()}, "x": case.x, "y": case.y}
    np.savez(directory / f"{case.id}.npz", **arrays)
    doc = {"id": case.id, "spec": case.spec, "arrays": f"{case.id}.npz", "meta": case.meta}
    path = directory / f"{case.id}.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    return path


def load_case(path):
    """Read a case written by ``save_case`` (arrays with allow_pickle=False) and validate it."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path.name}: not valid JSON ({exc})") from None
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema("case.schema.json")).iter_errors(doc))
    if error is not None:
        raise SpecError(f"{path.name}: {_path(error).replace('spec', 'case', 1)}: {error.message}")
    arrays = path.with_name(doc.get("arrays", path.stem + ".npz"))
    try:
        with np.load(arrays, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise SpecError(f"{arrays.name}: no array {missing[0]!r} (holds {sorted(npz.files)})")
            params = {k.removeprefix("params/"): npz[k] for k in npz.files if k.startswith("params/")}
            case = Case(doc["spec"], params, npz["x"], npz["y"], doc.get("id", path.stem), doc.get("meta", {}))
    except FileNotFoundError:
        raise SpecError(f"{path.name}: its arrays file {arrays.name} does not exist") from None
    except ValueError as exc:          # pickled objects (refused), a file that is not an .npz
        raise SpecError(f"{arrays.name}: cannot be read as plain arrays ({exc})") from None
    if not _ID.match(case.id):
        raise SpecError(f"{path.name}: id {case.id!r} must match {_ID.pattern}")
    return validate_case(case)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
