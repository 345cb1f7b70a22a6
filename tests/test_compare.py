"""Unit tests of bpcheck.compare: metrics on hand-computed values, derived
tolerances, and classification -- a doubled gradient is a bug in the right
layer's row, a ReLU sitting exactly on its kink is a kink, not a bug."""
import math

import numpy as np
import pytest

from bpcheck.backends import PythonBackend
from bpcheck.compare import (ALPHA, FLOOR_U, TOLERANCE, UNIT_ROUNDOFF, classify, describe,
                             kink_layers, metrics)
from bpcheck.judge import judge
from bpcheck.spec import Case, validate_case
from reference import activations as ref_activations
from reference.network import backprop as reference_backprop

U32 = 2.0**-24


# ---- metrics -----------------------------------------------------------------

def test_metrics_on_hand_computed_values():
    g, t = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    m = metrics(g, t, U32)
    # ||g - t|| = 1, ||t|| = sqrt(14); <g, t> = 11; ||g|| = 3
    assert m["rel"] == pytest.approx(1 / math.sqrt(14), rel=1e-15)
    assert m["err_u"] == pytest.approx(2**24 / math.sqrt(14), rel=1e-15)
    assert m["scale"] == pytest.approx(11 / 14, rel=1e-15)
    assert m["max_abs"] == pytest.approx(1 / 3, rel=1e-15)
    assert m["cosine"] == pytest.approx(11 / (3 * math.sqrt(14)), rel=1e-15)


def test_metrics_of_a_doubled_gradient_say_so():
    t = np.array([[0.5, -1.5], [2.0, 0.25]])
    m = metrics(2 * t, t, UNIT_ROUNDOFF["float64"])
    assert m["scale"] == pytest.approx(2.0)
    assert m["cosine"] == pytest.approx(1.0)
    assert m["rel"] == pytest.approx(1.0)
    assert m["max_abs"] == pytest.approx(1.0)


def test_metrics_exact_zero_and_non_finite():
    assert metrics(np.zeros(3), np.zeros(3), U32)["err_u"] == 0.0
    assert metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0]), U32)["err_u"] == 0.0
    m = metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]), U32)
    assert math.isinf(m["err_u"]) and math.isnan(m["scale"])
    # one ulp of 1.0 in float32 is 2u relative to a norm of 1
    assert metrics(np.float32(1 + 2**-23), np.float32(1.0), U32)["err_u"] == pytest.approx(2.0)


# ---- cases built by hand ----------------------------------------------------

def _case(dtype="float64", b0_first=0.0, activations=("relu", "tanh"), case_id="hand"):
    """Two layers; with b0_first = 0 the first unit's z is exactly 0 for example 0:
    0.5 * 1.0 + (-0.25) * 2.0 + 0 = 0 (every product and sum exact)."""
    spec = {"input_dim": 2, "layers": [{"units": 3, "activation": activations[0]},
                                       {"units": 2, "activation": activations[1]}],
            "loss": "half_sse", "dtype": dtype}
    params = {"layers.0.W": np.array([[0.5, -0.25], [0.3, 0.7], [-0.6, 0.2]]),
              "layers.0.b": np.array([b0_first, 0.1, 0.05]),
              "layers.1.W": np.array([[0.8, -0.4, 0.3], [-0.2, 0.9, 0.45]]),
              "layers.1.b": np.array([0.15, -0.35])}
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    y = np.array([[0.3, -0.7], [1.1, 0.2]])
    case = Case(spec, {k: v.astype(dtype) for k, v in params.items()}, x.astype(dtype), y.astype(dtype),
                id=case_id)
    return validate_case(case)


def _doubling(layer):
    def backprop(spec, params, x, y):
        out = reference_backprop(spec, params, x, y)
        out["grads"][f"layers.{layer}.W"] = out["grads"][f"layers.{layer}.W"] * 2
        return out
    return PythonBackend(backprop, f"doubled_W{layer}")


def _relu_prime_one(spec, params, x, y):
    """The reference with relu'(0) = 1 instead of the contract's 0."""
    relu, _ = ref_activations.ACTIVATIONS["relu"]
    saved = ref_activations.ACTIVATIONS["relu"]
    ref_activations.ACTIVATIONS["relu"] = (relu, lambda z: (z >= 0).astype(z.dtype))
    try:
        return reference_backprop(spec, params, x, y)
    finally:
        ref_activations.ACTIVATIONS["relu"] = saved


RELU_PRIME_ONE = PythonBackend(_relu_prime_one, "relu_prime_one")
REFERENCE = PythonBackend(reference_backprop, "reference")


def _row(rows, layer, tensor):
    (row,) = [r for r in rows if r["layer"] == layer and r["tensor"] == tensor]
    return row


# ---- tolerances --------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reference_passes_with_derived_tolerance_and_margin(dtype):
    j = judge(_case(dtype, b0_first=0.25, activations=("tanh", "sigmoid")), REFERENCE)
    assert j.rows and not j.failures, "\n".join(describe(r) for r in j.failures)
    tensors = {(r["layer"], r["tensor"]) for r in j.rows}
    assert {(None, "loss"), (None, "input_grad"), (0, "W"), (0, "b"), (0, "delta"), (0, "activation"),
            (1, "W"), (1, "b")} <= tensors
    for r in j.rows:
        assert set(r["oracle_err_u"]) == {"torch", "jax"}
        trusted = [e for o, e in r["oracle_err_u"].items() if o not in r["excluded_oracles"]]
        assert r["tol_u"] == pytest.approx(ALPHA * max(trusted) + FLOOR_U * r["kappa"])
        assert r["kappa"] >= 1
        assert r["margin"] == (pytest.approx(r["tol_u"] / r["err_u"]) if r["err_u"] else math.inf)
        assert r["class"] == "pass" and r["margin"] >= 1
    assert {r["who"] for r in j.oracle_rows} == {"torch", "jax"}


# ---- classification ----------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", [0, 1])
def test_doubled_gradient_is_a_bug_in_that_layer_only(dtype, layer):
    j = judge(_case(dtype, b0_first=0.25, activations=("tanh", "sigmoid")), _doubling(layer))
    bad = _row(j.rows, layer, "W")
    assert bad["class"] == "bug"
    assert bad["margin"] < 1
    assert bad["scale"] == pytest.approx(2.0, rel=1e-5)
    assert [(r["layer"], r["tensor"]) for r in j.failures] == [(layer, "W")]
    text = describe(bad)
    assert f"doubled_W{layer} layer {layer}" in text and "class bug" in text


def test_relu_exactly_on_its_kink_is_a_kink_not_a_bug():
    case = _case("float64", b0_first=0.0)
    j = judge(case, RELU_PRIME_ONE)
    assert j.kinks == [0]
    failing = {(r["layer"], r["tensor"]) for r in j.failures}
    assert (0, "W") in failing and (0, "b") in failing  # relu'(0) = 1 does change the gradient
    assert {r["class"] for r in j.failures} == {"kink"}
    assert all(r["class"] == "pass" for r in j.rows if r["layer"] == 1)


def test_same_candidate_away_from_the_kink_passes():
    j = judge(_case("float64", b0_first=0.25), RELU_PRIME_ONE)
    assert j.kinks == []
    assert not j.failures, "\n".join(describe(r) for r in j.failures)


def test_a_bug_after_the_kink_is_still_a_bug():
    """The kink at layer 0 excuses layers <= 0 only; a doubled layer-1 gradient is a bug."""
    j = judge(_case("float64", b0_first=0.0), _doubling(1))
    assert _row(j.rows, 1, "W")["class"] == "bug"


def test_kink_layers_uses_the_rounding_scale():
    case = _case("float64", b0_first=0.0)
    truth = {"pre_activations": {}, "activations": {}}
    a = case.x
    for i, layer in enumerate(case.spec["layers"]):
        z = a @ case.params[f"layers.{i}.W"].T + case.params[f"layers.{i}.b"]
        a = np.maximum(z, 0) if layer["activation"] == "relu" else np.tanh(z)
        truth["pre_activations"][f"layers.{i}"], truth["activations"][f"layers.{i}"] = z, a
    assert kink_layers(case, truth) == [0]
    u, kappa = UNIT_ROUNDOFF["float64"], TOLERANCE["kink_kappa"][0]
    truth["pre_activations"]["layers.0"] = truth["pre_activations"]["layers.0"] + 4 * kappa * u
    assert kink_layers(case, truth) == []
    truth["pre_activations"]["layers.0"][0, 0] = 1e-310  # subnormal: flushed to zero by XLA
    assert kink_layers(case, truth) == [0]


def _failing_row(**kw):
    row = {"rel": 0.5, "dtype": "float32", "excluded_oracles": []}
    row.update(kw)
    return row


def test_classify_each_class():
    assert classify(_failing_row(), {}, kinked=True) == "kink"
    assert classify(_failing_row(excluded_oracles=["torch"]), {"torch": True}, kinked=False) == "convention"
    assert classify(_failing_row(excluded_oracles=["torch"]), {"torch": False}, kinked=False) == "bug"
    assert classify(_failing_row(rel=1e-5), {}, kinked=False) == "precision"  # below u^0.5 = 2.4e-4
    assert classify(_failing_row(rel=1e-3), {}, kinked=False) == "bug"
    assert classify(_failing_row(rel=math.inf), {}, kinked=False) == "bug"


def test_metrics_floors_a_truth_that_underflows_in_the_dtype():
    t = np.array([2e-47, -1e-47])  # below float32's smallest subnormal: 0 is the float32 answer
    assert metrics(np.zeros(2), t, U32)["err_u"] == pytest.approx(2**24)  # against float64's tiny
    tiny32 = float(np.finfo(np.float32).tiny)
    assert metrics(np.zeros(2), t, U32, tiny=tiny32)["err_u"] < 0.1
    assert metrics(np.array([tiny32, 0.0]), t, U32, tiny=tiny32)["err_u"] == pytest.approx(2**24, rel=1e-6)


def test_cancellation_is_judged_against_the_terms_not_a_lucky_oracle():
    """Saturated tanh (z = 8.4, float32): 1 - tanh^2 is all rounding in every float
    implementation; torch returns exactly 0, the reference one ulp. Neither is a bug,
    and kappa (the condition of the sum) says so. Found by the property suite."""
    from bpcheck.spec import Case
    f = np.float32
    spec = {"input_dim": 3, "layers": [{"units": 3, "activation": "identity"},
            {"units": 1, "activation": "identity"}, {"units": 1, "activation": "tanh"}],
            "loss": "sse", "dtype": "float32"}
    params = {"layers.0.W": np.array([[0, .920152, .920152], [.920152] * 3, [.920152] * 3], f),
              "layers.0.b": np.array([.5, 1, 1], f), "layers.1.W": np.array([[1.010363] * 3], f),
              "layers.1.b": np.zeros(1, f), "layers.2.W": np.ones((1, 1), f), "layers.2.b": np.zeros(1, f)}
    case = Case(spec, params, np.ones((1, 3), f), np.zeros((1, 1), f))
    j = judge(case, REFERENCE)
    assert not j.failures, "\n".join(describe(r) for r in j.failures)
    last_delta = next(r for r in j.rows if (r["layer"], r["tensor"]) == (2, "delta"))
    assert last_delta["kappa"] > 1000 and last_delta["err_u"] > 32 * 10  # plain floor would fail it
