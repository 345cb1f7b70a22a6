"""Whole networks as graphs of op records: the spec, the walker, the judgement and the first wrong node.

- A malformed graph is refused with a message naming the node and the problem.
- A one-node graph's truth is the op's own truth (the walker adds nothing to a single record).
- Correct networks pass every family in both dtypes: the records themselves, each framework's built-ins
  composed (torch.autograd.grad, jax.vjp) and the hand-written reference (``reference/networks.py``).
- Every member of ``tests/meta/graph_zoo`` fails on every seed, at its first wrong node and tensor, with
  its words; every record slip swapped into any node of any architecture is located at that node.
- A failure shrinks to the smallest size that still fails.
- The tolerance: a quarter of each tensor's allowed error passes; float64 catches a 1e-10 relative
  error on at least 90% of the tensors.
"""
from pathlib import Path

import numpy as np
import pytest

from bpcheck import ops
from bpcheck.ops import architectures
from bpcheck.ops.candidates import load_module
from bpcheck.ops.cases import draw_case
from bpcheck.ops.exact import truth as op_truth
from bpcheck.ops.graph import Graph, GraphError, GraphNode, truth
from bpcheck.ops.graph_check import (GraphCandidate, check_graph, draw_graph_case, framework_candidate,
                                     judge_graph_case, record_candidate)
from reference import networks

ARCHS = tuple(architectures.ARCHITECTURES)
ZOO = sorted((Path(__file__).parent / "meta" / "graph_zoo").glob("bug_*.py"))
SEEDS = range(10)


# --- the spec ------------------------------------------------------------------------------------

def _doc(**change):
    doc = architectures.get("residual_mlp").graph(architectures.get("residual_mlp").sizes[0]).to_json()
    doc.update(change)
    return doc


@pytest.mark.parametrize("change, words", [
    ({"output": "nowhere"}, "output 'nowhere' is not a node"),
    ({"params": ["w1", "b1", "w2", "b2", "gamma", "beta", "w3", "b3", "unused"]}, "not used on the way"),
    ({"inputs": ["x", "x"]}, "used twice"),
    ({"format": "bpcheck-graph/9"}, "format"),
    ({"nodes": []}, "non-empty"),
    ({"extra": 1}, "unknown keys"),
])
def test_a_malformed_graph_is_refused_with_its_reason(change, words):
    with pytest.raises(GraphError, match=words):
        Graph.from_json(_doc(**change))


def test_a_node_binding_the_wrong_inputs_or_a_later_node_is_refused():
    doc = _doc()
    doc["nodes"][0]["inputs"] = {"x": "x", "w": "w1"}
    with pytest.raises(GraphError, match="node 'fc1' .affine. binds"):
        Graph.from_json(doc)
    doc = _doc()
    doc["nodes"][0]["inputs"]["x"] = "relu"
    with pytest.raises(GraphError, match="not a leaf or an earlier node"):
        Graph.from_json(doc)
    doc = _doc()
    doc["nodes"][0]["op"] = "convolution"
    with pytest.raises(GraphError, match="unknown op 'convolution'"):
        Graph.from_json(doc)


def test_a_graph_round_trips_through_json():
    for name in ARCHS:
        arch = architectures.get(name)
        graph = arch.graph(arch.sizes[0])
        assert Graph.from_json(graph.to_json()) == graph


# --- the walker: a one-node graph is its op ---------------------------------------------------------

@pytest.mark.parametrize("name", ["layernorm", "conv2d", "softmax_loss", "embedding", "maxpool2d"])
def test_a_one_node_graph_has_the_ops_truth(name):
    op = ops.get(name)
    case = draw_case(op, "plain", "float64", 3)
    node = GraphNode("n", name, {k: k for k in (*op.inputs, *op.constants)}, dict(case.hyper))
    graph = Graph(tuple(op.inputs), (), tuple(op.constants), (node,), "n")
    t = truth(graph, case.inputs, case.constants, case.cotangent)
    want = op_truth(op, case)
    np.testing.assert_array_equal(t["out"], want["out"])
    for k in op.inputs:
        np.testing.assert_array_equal(t["d" + k], want["grads"][k])


# --- correct networks pass --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ARCHS)
def test_the_records_and_the_reference_pass_every_family_in_both_dtypes(name):
    for fn in (record_candidate(), networks.__dict__[name]):
        report = check_graph(name, fn, per_family=3)
        assert report.verdict == "pass", report.summary()
        assert all(report.coverage.values()) and len(report.coverage) == 2 * len(architectures.get(name).families)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("name", ARCHS)
def test_each_frameworks_built_ins_composed_pass(name, framework):
    report = check_graph(name, framework_candidate(framework), per_family=1)
    assert report.verdict == "pass", report.summary()


# --- bugs are caught at their node ------------------------------------------------------------------

@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_every_zoo_member_fails_on_every_seed_at_its_node(path):
    member = load_module(path)
    want = member.EXPECTED
    for seed in SEEDS:
        report = check_graph(want["arch"], member.net, seed=seed, per_family=1)
        assert report.verdict == "fail", f"{path.name} passed on seed {seed}"
        culprit = report.first["culprit"]
        assert (culprit["node"], culprit["tensor"]) == (want["node"], want["tensor"]), report.summary()
        assert want["words"] in " ".join([culprit["words"], *culprit["hints"]]), report.summary()


def _changes_anything(case, slip):
    right = record_candidate().run(case)
    wrong = record_candidate(slip).run(case)
    return any(not np.array_equal(right["grads"][k], wrong["grads"][k]) for k in right["grads"])


def _slips():
    """(architecture, node, slip) for every record slip of every node that changes some gradient on the
    seeds used (a slip at exact ties, or a transpose's on a 2-d involution, changes nothing there)."""
    found = []
    for name in ARCHS:
        arch = architectures.get(name)
        for node in arch.graph(arch.sizes[-1]).nodes:
            found += [(name, node.name, s.name) for s in ops.get(node.op).slips
                      if any(_changes_anything(draw_graph_case(name, "plain", "float64", seed), (node.name, s.name))
                             for seed in range(3))]
    return found


SLIPS = _slips()


def test_most_record_slips_apply_inside_the_networks():
    assert len(SLIPS) >= 15, SLIPS


@pytest.mark.parametrize("name, node, slip", SLIPS, ids=[f"{a}-{n}-{s}" for a, n, s in SLIPS])
def test_a_record_slip_at_any_node_is_located_there(name, node, slip):
    for seed in range(3):
        case = draw_graph_case(name, "plain", "float64", seed)
        if not _changes_anything(case, (node, slip)):
            continue
        rows, culprit, cls = judge_graph_case(case, record_candidate((node, slip)))
        assert cls == "bug", (seed, rows)
        # the node itself, a node reading its output, or a value it reads (where a lost part shows)
        near = {node, *(c for c, _ in case.graph.consumers(node)), *case.graph.node(node).inputs.values()}
        assert culprit["node"] in near, (seed, culprit)


def test_a_failure_shrinks_to_the_smallest_size_that_fails():
    member = load_module(ZOO[[p.stem for p in ZOO].index("bug_residual_assigned")])
    report = check_graph("residual_mlp", member.net, seed=1)
    assert report.first["case"].size == architectures.get("residual_mlp").sizes[0]


def test_a_candidate_that_raises_or_returns_garbage_is_a_bug_with_its_reason():
    def raises(values, constants, hyper, dout):
        raise RuntimeError("shapes do not align")

    def garbage(values, constants, hyper, dout):
        return "loss"

    for fn, words in ((raises, "raised RuntimeError: shapes do not align"), (garbage, "return (out, grads)")):
        report = check_graph("tied_embedding", fn, per_family=1)
        assert report.verdict == "fail"
        assert words in report.first["rows"][0]["message"]


# --- the tolerance ----------------------------------------------------------------------------------

def _moved(result, tensor, size, rng):
    """``result`` with ``tensor`` moved by ``size`` in a random direction."""
    group, name = (("grads", tensor[1:]) if tensor.startswith("d") and not tensor.startswith("delta ")
                   else ("deltas", tensor[len("delta "):]) if tensor.startswith("delta ") else (None, "out"))
    g = result["out"] if group is None else result[group][name]
    direction = rng.standard_normal(np.shape(g))
    direction = direction / np.linalg.norm(direction) if direction.ndim else np.sign(direction) or 1.0
    moved = np.asarray(g, dtype=np.float64) + size * direction
    if group is None:
        return {**result, "out": moved}
    return {**result, group: {**result[group], name: moved}}


def _share_caught(dtype, rel):
    caught = total = 0
    rng = np.random.default_rng(0)
    for name in ARCHS:
        for family in ("plain", "uniform_cotangent"):
            for seed in range(3):
                case = draw_graph_case(name, family, dtype, seed)
                rows, _, _ = judge_graph_case(case, record_candidate())
                base = record_candidate().run(case)
                for row in rows:
                    if "allowed" not in row or row["truth_norm"] == 0 or row["tensor"] in ("out", "delta loss"):
                        continue
                    moved = _moved(base, row["tensor"], rel * row["truth_norm"], rng)
                    again, _, cls = judge_graph_case(case, GraphCandidate("moved", lambda c, m=moved: m))
                    total += 1
                    caught += next(r for r in again if r["tensor"] == row["tensor"])["status"] == "bug"
    return caught / total


def test_a_quarter_of_each_tensors_tolerance_passes():
    rng = np.random.default_rng(1)
    for name in ARCHS:
        for dtype in ("float32", "float64"):
            case = draw_graph_case(name, "plain", dtype, 0)
            rows, _, _ = judge_graph_case(case, record_candidate())
            base = record_candidate().run(case)
            for row in rows:
                if "allowed" not in row or row["tensor"] in ("out", "delta loss"):
                    continue
                moved = _moved(base, row["tensor"], row["allowed"] / 4, rng)
                again, _, cls = judge_graph_case(case, GraphCandidate("moved", lambda c, m=moved: m))
                assert cls == "pass", (name, dtype, row["tensor"])


def test_float64_catches_a_1e_10_relative_error_on_nine_tensors_in_ten():
    assert _share_caught("float64", 1e-10) >= 0.9


# --- the command line -------------------------------------------------------------------------------

def _bpcheck(*args):
    import subprocess
    import sys
    exe = str(Path(sys.executable).parent / "bpcheck")
    return subprocess.run([exe, "graph", *args], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])


def test_the_command_line_exits_0_1_2_for_pass_fail_and_bad_input():
    ok = _bpcheck("tied_embedding", "--fn", "reference/networks.py:tied_embedding", "--per-family", "1")
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stdout + ok.stderr
    bad = _bpcheck("tied_embedding", "--fn", "tests/meta/graph_zoo/bug_tied_weight_assigned.py:net")
    assert bad.returncode == 1 and "first wrong node: W" in bad.stdout, bad.stdout + bad.stderr
    for args, words in ((("nope", "--fn", "x.py:f"), "unknown architecture"),
                        (("cnn", "--fn", "missing.py:f"), "no such file"),
                        (("cnn", "--fn", "reference/networks.py:nothing"), "has no function"),
                        (("cnn",), "give one of")):
        r = _bpcheck(*args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
