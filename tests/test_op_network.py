"""The op records, walked as a chain, reproduce the dense path's certified arbiter on its own cases.

``bpcheck.ops.network.compile_spec`` turns a dense spec into a graph of transpose / affine / activation /
loss nodes, and the graph walker (``bpcheck.ops.graph``) applies the chain rule with each record's VJP. On the dense path's generated cases (the plain
grid and every edge family), the walker in ball arithmetic gives the arbiter's loss, every parameter
gradient and the input gradient, rounded to the same float64 -- two independent writings of the same
definitions (the arbiter hand-writes BP1-BP4, the walker composes records). A perturbed record is
caught: the control that shows the comparison can fail.
"""
from dataclasses import replace

import numpy as np
import pytest

from bpcheck import ops
from bpcheck.cases.generate import generate_cases
from bpcheck.ops.network import compile_spec, truth
from oracles import arb_oracle

CASES = generate_cases(1, 1)[::3]


def _walk(graph, case):
    r = truth(graph, case.params, case.x, case.y)
    return r["loss"], r["grads"], r["input_grad"]


def _close(a, b, rel=2.0**-50):
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0)) <= rel * scale


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_walker_is_the_arbiter(case):
    loss, grads, input_grad = _walk(compile_spec(case.spec), case)
    truth = arb_oracle.backprop(case.spec, case.params, case.x, case.y)
    assert _close(loss, truth["loss"])
    assert set(grads) == set(truth["grads"])
    for key, value in grads.items():
        assert _close(value, truth["grads"][key]), key
    assert _close(input_grad, truth["input_grad"])


def test_a_perturbed_record_is_caught(monkeypatch):
    case = next(c for c in CASES if any(l["activation"] == "tanh" for l in c.spec["layers"]))
    tanh = ops.get("tanh")
    wrong = replace(tanh, vjp=lambda ns, a, c, h, dout: {"x": tanh.vjp(ns, a, c, h, dout)["x"] * 1.0000001})
    monkeypatch.setitem(ops.REGISTRY, "tanh", wrong)
    _, grads, _ = _walk(compile_spec(case.spec), case)
    truth = arb_oracle.backprop(case.spec, case.params, case.x, case.y)
    assert not all(_close(grads[k], truth["grads"][k]) for k in grads)
