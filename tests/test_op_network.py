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
from bpcheck.core.spec import ACTIVATIONS, LOSSES, Case
from bpcheck.judge.bounds import running_bounds
from bpcheck.judge.classify import kink_truth
from bpcheck.ops.network import at_truth, backward, compile_spec, truth
from bpcheck.ops.running import Rule
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


# ---- BP1-BP4 in float64 with given derivatives: the walk the classifier and the hints read ----------

FINITE = [c for c in CASES if all(np.isfinite(v).all() for v in arb_oracle.backprop(
    c.spec, c.params, c.x, c.y)["grads"].values())]


@pytest.mark.parametrize("case", FINITE[:40], ids=lambda c: c.id)
def test_the_float64_walk_at_the_exact_derivatives_is_the_arbiter(case):
    t = arb_oracle.backprop(case.spec, case.params, case.x, case.y)
    w = backward(case.spec, *_at(case, t))
    for i in range(len(case.spec["layers"])):
        assert _close(w["deltas"][f"layers.{i}"], t["deltas"][f"layers.{i}"], 1e-9), i
    for key in t["grads"]:
        assert _close(w["grads"][key], t["grads"][key], 1e-9), key
    assert _close(w["input_grad"], t["input_grad"], 1e-9)


def _at(case, t):
    x, params, a, derivs = at_truth(case, t)
    return params, x, case.y, a, derivs


def _relu_case():
    spec = {"input_dim": 2, "layers": [{"units": 3, "activation": "relu"}, {"units": 2, "activation": "identity"}],
            "loss": "mse", "dtype": "float64"}
    params = {"layers.0.W": np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.25]]), "layers.0.b": np.zeros(3),
              "layers.1.W": np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]]), "layers.1.b": np.array([0.1, -0.2])}
    x = np.array([[1.0, 1.0], [2.0, -1.0]])        # z[0, 0] = 1 - 1 = 0 exactly: relu at its kink
    return Case(spec, params, x, np.array([[0.3, -0.1], [1.0, 2.0]]), "relu_kink")


def test_the_other_side_of_a_kink_moves_that_entry_of_delta_by_its_upstream_gradient():
    case = _relu_case()
    t = arb_oracle.backprop(case.spec, case.params, case.x, case.y)
    params, x, y, a, derivs = _at(case, t)
    assert t["pre_activations"]["layers.0"][0, 0] == 0 and derivs[0][0, 0] == 0.0     # relu'(0) = 0
    flipped = [d.copy() for d in derivs]
    flipped[0][0, 0] = 1.0
    base, other = backward(case.spec, params, x, y, a, derivs), backward(case.spec, params, x, y, a, flipped)
    moved = other["deltas"]["layers.0"] - base["deltas"]["layers.0"]
    expected = np.zeros_like(moved)
    expected[0, 0] = base["upstream"]["layers.0"][0, 0]
    assert expected[0, 0] != 0 and np.array_equal(moved, expected)
    assert np.array_equal(other["deltas"]["layers.1"], base["deltas"]["layers.1"])     # downstream: unmoved
    kink = kink_truth(case, t, [(0, 0, 0)])
    assert np.array_equal(kink["deltas"]["layers.0"] - t["deltas"]["layers.0"], moved)


def test_a_seed_replaces_the_loss_gradient():
    case = _relu_case()
    t = arb_oracle.backprop(case.spec, case.params, case.x, case.y)
    params, x, y, a, derivs = _at(case, t)
    seed = np.array([[1.0, -2.0], [0.5, 4.0]])
    w = backward(case.spec, params, x, y, a, derivs, seed=seed)
    assert np.array_equal(w["upstream"]["layers.1"], seed) and np.array_equal(w["deltas"]["layers.1"], seed)
    assert not np.array_equal(backward(case.spec, params, x, y, a, derivs)["deltas"]["layers.1"], seed)


# ---- the running bound: each op's step is its record's rule --------------------------------------

def test_every_op_a_dense_spec_compiles_to_has_a_running_rule_and_only_those():
    compiled = {n.op for a in ACTIVATIONS for loss in LOSSES
                for n in compile_spec({"input_dim": 2, "layers": [{"units": 2, "activation": a}],
                                       "loss": loss, "dtype": "float64"}).nodes}
    assert {name for name, record in ops.REGISTRY.items() if record.running is not None} == compiled


def test_the_bound_walks_the_records_rules(monkeypatch):
    case = FINITE[0]
    t = arb_oracle.backprop(case.spec, case.params, case.x, case.y)
    before = running_bounds(case, t)
    affine = ops.get("affine")

    def louder_forward(walk, n):                      # the affine step's scale ten times larger
        affine.running.forward(walk, n)
        walk.s2[n.name] = 100 * walk.s2[n.name]

    louder = Rule(louder_forward, affine.running.backward)
    monkeypatch.setitem(ops.REGISTRY, "affine", replace(affine, running=louder))
    after = running_bounds(case, t)
    assert all(np.all(after.z_scale[i] >= 9.99 * before.z_scale[i]) for i in range(len(before.z_scale)))
    assert after.norm(None, "input_grad") > before.norm(None, "input_grad")
