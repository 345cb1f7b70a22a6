"""Golden vectors: a fixed, versioned set of cases with their float64 truth, as files.

For implementations that cannot call Python (or run a subprocess): one case per
loss x activation x dtype, the same architecture each time

    x (4, 3) -> 4 units, act -> 3 units, act -> 2 units, last -> loss

where ``last`` is the activation the loss needs (README, "Conventions") or ``act``. Inputs
come from NumPy's PCG64 bit stream (``random_raw``, whose output is fixed by its
algorithm) seeded from the case id, so a case is the same whatever subset is
exported. Every input is a multiple of 2^-24 of at most 24 significant bits:
exactly representable in float32, so a case's float32 and float64 versions
share their inputs exactly.

Per vector ``<id>``: ``<id>.json`` + ``<id>.npz`` (the case, ``bpcheck.core.spec``
format), ``<id>.truth.npz`` and ``<id>.vector.json`` (the protocol request, the
truth and the error every tensor is allowed, in plain JSON), and ``manifest.json``.
The allowed error is bpcheck's own (``bpcheck.judge.compare``): the rounding the
definitions make in the case's dtype, a running error bound through the
forward pass and BP1-BP4, times the safety factor; a tensor g matches its
truth t when ||g - t||_2 <= allowed. ``check(directory, backprop)`` applies
bpcheck's whole judgement (kinks and conventions included) to a Python function.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from bpcheck.core.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case, param_shapes

VERSION = 1
BATCH, INPUT_DIM, HIDDEN, OUTPUTS = 4, 3, (4, 3), 2
KINDS = ("pre_activations", "activations", "deltas")


def vector_id(loss, activation, dtype):
    return f"v{VERSION}-{loss}-{activation}-{dtype}"


def _values(case_id, n):
    """n numbers in [-1, 1), multiples of 2^-23 (24 bits: exact in float32), fixed by case_id."""
    seed = int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "little")
    raw = np.random.PCG64(seed).random_raw(n)
    return (raw >> np.uint64(40)).astype(np.float64) / 2.0**23 - 1.0


def vector_case(loss, activation, dtype):
    """The golden case for one cell."""
    case_id = vector_id(loss, activation, dtype)
    layers = [{"units": u, "activation": activation} for u in HIDDEN]
    layers.append({"units": OUTPUTS, "activation": LAST_ACTIVATION.get(loss, activation)})
    spec = {"input_dim": INPUT_DIM, "layers": layers, "loss": loss, "dtype": dtype}
    shapes = param_shapes(spec)
    sizes = [int(np.prod(s)) for s in shapes.values()] + [BATCH * INPUT_DIM, BATCH * OUTPUTS]
    stream = iter(np.split(_values(vector_id(loss, activation, "any"), sum(sizes)), np.cumsum(sizes)[:-1]))
    params = {name: (next(stream) * (0.5 if name.endswith(".W") else 0.25)).reshape(shape).astype(dtype)
              for name, shape in shapes.items()}
    x = (next(stream) * 2).reshape(BATCH, INPUT_DIM).astype(dtype)
    v = next(stream).reshape(BATCH, OUTPUTS)
    if loss == "softmax_cross_entropy":
        y = ((v[:, 0] + 1) * 2**22).astype(np.int64) % OUTPUTS
    elif loss in ("binary_cross_entropy", "bce_with_logits"):
        y = ((v + 1) / 2).astype(dtype)
    else:
        y = v.astype(dtype)
    return Case(spec, params, x, y, case_id, {"vectors_version": VERSION})


def vector_cases(losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES):
    return [vector_case(loss, act, dtype) for loss in losses for act in activations for dtype in dtypes]


def truth_and_tolerance(case):
    """The float64 truth (the arbiter's) and, per tensor key, the allowed error ||g - t||_2."""
    from bpcheck.judge.bounds import running_bounds
    from bpcheck.judge.compare import SAFETY, allowed_error, tensors
    from bpcheck.core.rounding import norm2
    from bpcheck.diagnose.repro import key
    from bpcheck.exact.truth import exact
    truth = exact(case)
    bounds = running_bounds(case, truth, safety=SAFETY)
    allowed = {}
    for layer, tensor, value in tensors(truth, case.spec):
        row = {"layer": layer, "tensor": tensor}
        allowed[key(row)] = allowed_error(bounds, layer, tensor, case.spec["dtype"], np.size(value),
                                          truth_norm=norm2(value))
    return truth, allowed


def check(directory, backprop, *, findings=None):
    """Judge ``backprop`` (the Python contract) on every vector in ``directory`` with ``bpcheck.judge.judge``,
    case-level findings included (inputs overwritten, unknown gradient keys; the state check on the
    first vector and on every failing one); return {vector id: verdict} ("pass" or "fail"). A dict
    passed as ``findings`` receives {vector id: [finding, ...]} for the vectors that have any.
    Raises what ``backprop`` raises (as ``bpcheck.run.backends.AdapterError``; NotImplementedError as
    ``Unsupported``), SpecError for a bad vector file, OSError for a missing one."""
    from bpcheck.core.spec import load_case
    from bpcheck.judge.judge import judge
    from bpcheck.run.backends import PythonBackend
    backend = PythonBackend(backprop, getattr(backprop, "__name__", "backprop"))
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    out = {}
    for n, entry in enumerate(manifest["vectors"]):
        case = load_case(Path(directory) / f"{entry['id']}.json")
        with np.errstate(all="ignore"):
            j = judge(case, backend.run(case), who=backend.name, rerun=backend.run,
                      rerun_when="always" if n == 0 else "failing")
        out[entry["id"]] = j.verdict()
        if findings is not None and j.findings:
            findings[entry["id"]] = j.findings
    return out


def write_vector(case, truth, tolerance, directory):
    """The files of one vector; returns their names."""
    from bpcheck.core.spec import save_case
    from bpcheck.run.protocol import encode_array, encode_request
    directory = Path(directory)
    save_case(case, directory)
    arrays = {"loss": np.float64(truth["loss"]), "input_grad": truth["input_grad"],
              **{f"grads/{k}": v for k, v in truth["grads"].items()},
              **{f"{kind}/{k}": v for kind in KINDS for k, v in truth[kind].items()}}
    np.savez(directory / f"{case.id}.truth.npz", **arrays)
    f64 = lambda a: encode_array(np.asarray(a, np.float64))  # noqa: E731
    doc = {"format": "bpcheck-vector", "version": VERSION, "id": case.id,
           "request": encode_request(case, case.id),
           "truth": {"loss": float(truth["loss"]), "grads": {k: f64(v) for k, v in truth["grads"].items()},
                     "input_grad": f64(truth["input_grad"]),
                     **{kind: {k: f64(v) for k, v in truth[kind].items()} for kind in KINDS}},
           "allowed": tolerance,
           "unit_roundoff": {"float32": 2.0**-24, "float64": 2.0**-53}[case.spec["dtype"]]}
    (directory / f"{case.id}.vector.json").write_text(json.dumps(doc, allow_nan=False) + "\n")
    return [f"{case.id}.json", f"{case.id}.npz", f"{case.id}.truth.npz", f"{case.id}.vector.json"]


def export(directory, *, losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES, progress=None):
    """Write the vectors (or a subset of the fixed set) and manifest.json into ``directory``."""
    from bpcheck import __version__
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for case in vector_cases(losses, activations, dtypes):
        truth, tolerance = truth_and_tolerance(case)
        files = write_vector(case, truth, tolerance, directory)
        entries.append({"id": case.id, "loss": case.spec["loss"], "dtype": case.spec["dtype"],
                        "activation": case.spec["layers"][0]["activation"], "files": files})
        if progress:
            progress(case)
    manifest = {
        "format": "bpcheck-vectors", "version": VERSION, "bpcheck": __version__, "count": len(entries),
        "truth": "the exact values of the inputs differentiated in certified ball arithmetic "
                 "(python-flint), rounded once to float64",
        "check": "for every tensor key k: ||g - t||_2 <= allowed[k] (the rounding the definitions make "
                 "in the case's dtype, times bpcheck's safety factor); keys: loss, input_grad, layers.i.W, "
                 "layers.i.b, layers.i.delta (dC/dz_i), layers.i.activation. bpcheck.proof.vectors.check also "
                 "classifies what fails (kinks, documented conventions) as bpcheck validate does",
        "vectors": entries}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
