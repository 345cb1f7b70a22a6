"""The two example implementations of every architecture pass ``bpcheck graph``.

``examples/numpy_networks.py`` (plain NumPy, closed-form backward passes, every node's delta and output:
each node judged on its own too) and ``examples/torch_networks.py`` (torch.nn.functional, autograd):
for each architecture, ``check_graph(arch, fn, seed=s, per_family=2)`` passes for seeds 0..4 -- every
family in float32 and float64. Correct implementations written independently of ``reference/`` must
pass; a failure here is either a bug in the example or a false alarm of bpcheck's.
"""
from pathlib import Path

import numpy as np
import pytest

from bpcheck.ops import architectures
from bpcheck.opcheck.candidates import load_module
from bpcheck.opcheck.graph_candidates import python_candidate
from bpcheck.ops.graph_cases import draw_graph_case
from bpcheck.opcheck.graph_check import check_graph, judge_graph_case

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FILES = ("numpy_networks.py", "torch_networks.py")
ARCHS = tuple(architectures.ARCHITECTURES)
SEEDS = range(5)
_MODULES = {}


def _module(name):
    if name not in _MODULES:
        if name.startswith("torch"):
            pytest.importorskip("torch")
        _MODULES[name] = load_module(EXAMPLES / name)
    return _MODULES[name]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("file", FILES)
def test_each_example_passes_every_family_of_every_architecture(file, arch, seed):
    report = check_graph(arch, getattr(_module(file), arch), seed=seed, per_family=2)
    assert report.verdict == "pass", report.summary()
    assert report.cases == 2 * 2 * len(architectures.get(arch).families)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_numpy_example_is_judged_node_by_node_and_keeps_float32(arch):
    """It returns every node's output and delta under the graph's names, so each node is judged on its
    own (rows of scope "node"); every array it returns stays float32 on a float32 case."""
    case = draw_graph_case(arch, "plain", "float32", 0)
    fn = getattr(_module("numpy_networks.py"), arch)
    out, grads, deltas, outputs = fn({k: v.copy() for k, v in case.values.items()},
                                     {k: v.copy() for k, v in case.constants.items()}, case.hyper,
                                     np.asarray(case.cotangent).copy())
    names = {n.name for n in case.graph.nodes}
    assert set(deltas) == names and set(outputs) == names and set(grads) == set(case.graph.leaves)
    for what, arrays in (("out", {"out": out}), ("grads", grads), ("deltas", deltas), ("outputs", outputs)):
        wide = {k: np.asarray(a).dtype for k, a in arrays.items() if np.asarray(a).dtype != np.float32}
        assert not wide, f"{what} not float32: {wide}"
    rows, culprit, cls = judge_graph_case(case, python_candidate(fn))
    assert cls == "pass" and culprit is None
    judged = {r["node"] for r in rows if r["scope"] == "node" and "node" in r}
    assert judged == names
