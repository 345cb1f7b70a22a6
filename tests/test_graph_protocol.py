"""Whole networks over the line protocol: bpcheck-op/1's graph requests, for a program in any language.

The example program (examples/graph_program.py, NumPy networks behind the protocol) passes every
architecture; a graph zoo member behind it fails at its node, as it does in process; a program whose hello
leaves the graph out is declined; one that hangs stops the run; a scalar cotangent travels as shape []."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bpcheck.ops import architectures
from bpcheck.opcheck.candidates import CandidateFatal, load_module
from bpcheck.opcheck.graph_candidates import program_candidate
from bpcheck.opcheck.graph_check import check_graph
from bpcheck.run.protocol import decode_array, encode_array

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ZOO = ROOT / "tests" / "meta" / "graph_zoo"
HOSTILE = ROOT / "tests" / "hostile" / "zoo_program.py"


@pytest.fixture
def example():
    candidate = program_candidate([PYTHON, str(ROOT / "examples" / "graph_program.py")])
    yield candidate
    candidate.close()


@pytest.mark.parametrize("arch", list(architectures.ARCHITECTURES))
def test_the_example_program_passes_every_architecture(arch, example):
    report = check_graph(arch, example, per_family=1)
    assert report.verdict == "pass" and report.cases == 2 * len(architectures.get(arch).families), report.summary()


@pytest.mark.parametrize("member", ["bug_residual_assigned.py", "bug_transformer_attention_no_rowsum.py"])
def test_a_zoo_member_behind_the_protocol_fails_at_its_node(member):
    want = load_module(ZOO / member).EXPECTED
    candidate = program_candidate([PYTHON, str(HOSTILE), str(ZOO / member)])
    try:
        report = check_graph(want["arch"], candidate, per_family=1)
    finally:
        candidate.close()
    assert report.verdict == "fail"
    assert (report.first["culprit"]["node"], report.first["culprit"]["tensor"]) == (want["node"], want["tensor"])


def test_a_graph_left_out_of_the_hello_is_declined_and_a_hang_stops_the_run():
    member = str(ZOO / "bug_residual_assigned.py")
    candidate = program_candidate([PYTHON, str(HOSTILE), member, "nohello"])
    try:
        report = check_graph("residual_mlp", candidate, per_family=1)
    finally:
        candidate.close()
    assert report.verdict == "none" and report.cases == 0 and "leaves out graph residual_mlp" in report.declined[0]
    candidate = program_candidate([PYTHON, str(HOSTILE), member, "hang"], timeout=0.5)
    try:
        with pytest.raises(CandidateFatal, match="hangs"):
            check_graph("residual_mlp", candidate, per_family=1)
    finally:
        candidate.close()


def test_a_scalar_travels_with_shape_empty():
    for value in (np.float32(1.5), np.asarray(-2.0), np.arange(3.0)):
        encoded = json.loads(json.dumps(encode_array(np.asarray(value))))
        assert encoded["shape"] == list(np.shape(value))
        assert decode_array(encoded, np.float64).shape == np.shape(value)
