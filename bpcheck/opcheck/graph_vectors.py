"""Golden vectors for whole networks: fixed graph cases with their truth and tolerances, in plain JSON.

For an implementation that can run neither Python nor a pipe. ``export(directory)`` writes one vector
per architecture x dtype x family (version 1: the architecture's middle size, seed 0) as
``<id>.graph-vector.json``:

    {"format": "bpcheck-graph-vector", "version": 1, "id", "arch", "dtype", "family", "seed", "size",
     "request": exactly a bpcheck-op/1 graph request (docs/protocol.md),
     "truth": {"out": A, "grads": {leaf: A}, "deltas": {node: A}}   (float64),
     "allowed": {"out": e, "d<leaf>": e, "delta <node>": e}}

A tensor g matches when ||g - t||_2 <= allowed (SAFETY u ||s|| + floor: the rounding the definitions make
in the case's dtype through the whole graph). ``manifest.json`` lists them; ``check(directory, fn)``
applies bpcheck's whole judgement (node by node too, when ``fn`` returns outputs and deltas) to a Python
function with the graph contract.
"""
import json
from pathlib import Path

import numpy as np

from bpcheck.core.rounding import norm2
from bpcheck.judge.compare import SAFETY, underflow_floor
from bpcheck.ops import architectures
from bpcheck.ops.algebra import UNIT_ROUNDOFF
from bpcheck.ops.graph import Graph, bound, truth
from bpcheck.opcheck.graph_candidates import python_candidate
from bpcheck.ops.graph_cases import GraphCase, draw_graph_case
from bpcheck.opcheck.graph_check import judge_graph_case
from bpcheck.run.protocol import decode_array, encode_array

__all__ = ["VERSION", "export", "load", "check"]

VERSION = 1
FORMAT = "bpcheck-graph-vector"


def _cases():
    for name, arch in architectures.ARCHITECTURES.items():
        for dtype in ("float32", "float64"):
            for family in arch.families:
                yield draw_graph_case(arch, family, dtype, 0, arch.sizes[min(1, len(arch.sizes) - 1)])


def _id(case):
    return f"g{VERSION}-{case.arch}-{case.family}-{case.dtype}"


def _vector(case):
    args = (case.graph, case.values, case.constants, case.cotangent)
    t, s = truth(*args), bound(*args, case.dtype)
    u = UNIT_ROUNDOFF[case.dtype]
    judged = ["out"] + [f"d{k}" for k in case.graph.leaves] + [f"delta {n.name}" for n in case.graph.nodes
                                                              if f"delta {n.name}" not in t["uncertified"]]
    f64 = (lambda a: encode_array(np.asarray(a, dtype=np.float64)))  # noqa: E731
    return {"format": FORMAT, "version": VERSION, "id": _id(case), "arch": case.arch, "dtype": case.dtype,
            "family": case.family, "seed": case.seed, "size": case.size,
            "request": {"id": _id(case), "graph": case.arch, "spec": case.graph.to_json(), "dtype": case.dtype,
                        "hyper": case.hyper, "values": {k: encode_array(v) for k, v in case.values.items()},
                        "constants": {k: encode_array(v) for k, v in case.constants.items()},
                        "cotangent": encode_array(case.cotangent)},
            "truth": {"out": f64(t["out"]), "grads": {k: f64(t[f"d{k}"]) for k in case.graph.leaves},
                      "deltas": {n.name: f64(t[f"delta {n.name}"]) for n in case.graph.nodes
                                 if f"delta {n.name}" in judged}},
            "allowed": {k: SAFETY * u * norm2(s[k]) + underflow_floor(case.dtype, np.size(t[k])) for k in judged}}


def export(directory):
    """Write every vector and ``manifest.json`` into ``directory``; the list of file names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for case in _cases():
        doc = _vector(case)
        name = f"{doc['id']}.graph-vector.json"
        (directory / name).write_text(json.dumps(doc, allow_nan=False) + "\n")
        names.append(name)
    (directory / "manifest.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, "vectors": names},
                                                        indent=1) + "\n")
    return names


def load(path):
    """The ``GraphCase`` of a vector file (its arrays exactly as written). ValueError on a malformed file."""
    try:
        doc = json.loads(Path(path).read_text())
        r = doc["request"]
        dtype = np.dtype(r["dtype"])
        return GraphCase(doc["arch"], r["dtype"], doc["family"], doc["seed"], doc["size"], Graph.from_json(r["spec"]),
                         {k: decode_array(v, dtype, k) for k, v in r["values"].items()},
                         {k: decode_array(v, dtype, k) for k, v in r["constants"].items()},
                         decode_array(r["cotangent"], dtype, "cotangent"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a graph vector ({exc})") from None


def check(directory, implementations):
    """{vector id: "pass" | "bug"} judged by bpcheck, for ``implementations``: a module (or any object)
    with one function per architecture name, or a dict {architecture: function}, each with the graph
    contract; vectors of an architecture it lacks are left out."""
    found = implementations if isinstance(implementations, dict) else vars(implementations)
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    out = {}
    for name in manifest["vectors"]:
        case = load(Path(directory) / name)
        if callable(found.get(case.arch)):
            out[name.split(".")[0]] = judge_graph_case(case, python_candidate(found[case.arch]))[2]
    return out
