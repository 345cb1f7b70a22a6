"""The graph golden vectors: plain JSON an implementation in any language can check itself against.

Exported fresh, every vector's truth and tolerance hold a correct implementation (examples/numpy_networks.py,
compared straight from the JSON with no bpcheck code, as a program without Python would) and not a graph
zoo member; ``check`` gives bpcheck's judgement on the same vectors; a malformed vector is refused."""
import json
from pathlib import Path

import numpy as np
import pytest

from bpcheck.ops import architectures
from bpcheck.opcheck.candidates import load_module
from bpcheck.opcheck.graph_vectors import VERSION, check, export, load

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = load_module(ROOT / "examples" / "numpy_networks.py")


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    directory = tmp_path_factory.mktemp("graph-vectors")
    names = export(directory)
    return directory, names


def _decode(value):
    return np.asarray(value["data"], dtype=np.float64).astype(value["dtype"]).reshape(value["shape"])


def _outside(directory, name, fn):
    """Tensors of ``fn``'s answer outside the vector's allowed error, read from the JSON alone."""
    doc = json.loads((directory / name).read_text())
    r = doc["request"]
    out, grads, *rest = fn({k: _decode(v) for k, v in r["values"].items()},
                           {k: _decode(v) for k, v in r["constants"].items()}, r["hyper"], _decode(r["cotangent"]))
    wrong = [k for k, v in doc["truth"]["grads"].items()
             if not np.linalg.norm(np.asarray(grads[k], np.float64) - _decode(v)) <= doc["allowed"]["d" + k]]
    if not np.linalg.norm(np.asarray(out, np.float64) - _decode(doc["truth"]["out"])) <= doc["allowed"]["out"]:
        wrong.append("out")
    return wrong


def test_one_vector_per_architecture_dtype_and_family(vectors):
    directory, names = vectors
    want = sum(2 * len(a.families) for a in architectures.ARCHITECTURES.values())
    assert len(names) == want
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["version"] == VERSION and manifest["vectors"] == names


def test_a_correct_implementation_is_within_every_vectors_tolerance(vectors):
    directory, names = vectors
    for name in names:
        arch = json.loads((directory / name).read_text())["arch"]
        assert _outside(directory, name, getattr(NETWORKS, arch)) == [], name


def test_a_wrong_implementation_is_outside(vectors):
    directory, names = vectors
    member = load_module(ROOT / "tests" / "meta" / "graph_zoo" / "bug_residual_assigned.py")
    mine = [n for n in names if "-residual_mlp-" in n]
    assert mine and all("x" in _outside(directory, n, member.net) for n in mine)


def test_check_applies_bpcheck_s_judgement(vectors):
    directory, names = vectors
    verdicts = check(directory, NETWORKS)
    assert len(verdicts) == len(names) and set(verdicts.values()) == {"pass"}
    member = load_module(ROOT / "tests" / "meta" / "graph_zoo" / "bug_tied_weight_assigned.py")
    verdicts = check(directory, {"tied_embedding": member.net})
    assert verdicts and set(verdicts.values()) == {"bug"}


def test_a_malformed_vector_is_refused(tmp_path):
    bad = tmp_path / "bad.graph-vector.json"
    bad.write_text('{"request": {"dtype": "float32"}}')
    with pytest.raises(ValueError, match="not a graph vector"):
        load(bad)
