"""The two hand-written layer modules of docs/layers_contract.md, checked.

``reference/layers.py`` (loops, staged backward passes) and
``examples/cs231n_layers.py`` (vectorised, closed forms) are written
independently. Each is checked against central finite differences in float64
the way CS231n's ``eval_numerical_gradient_array`` does it: perturb one entry
by h = 1e-6 and take (f(x + h)·dout − f(x − h)·dout) / 2h, with a random,
non-uniform upstream gradient dout. Then: float32 in gives float32 out, no
input is changed in place, the two modules agree, and a few values worked out
by hand.
"""
import copy
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from reference import layers as reference_layers

_spec = importlib.util.spec_from_file_location(
    "cs231n_layers_example", Path(__file__).resolve().parents[1] / "examples" / "cs231n_layers.py")
example_layers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example_layers)

MODULES = {"reference": reference_layers, "example": example_layers}
H = 1e-6
TOL = 1e-6


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-30)


def numeric_gradient(f, x, dout):
    """Σ (f(x + h·e_i) − f(x − h·e_i))·dout / 2h for every entry i of x, perturbing x in place."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + H
        pos = np.sum(f() * dout)
        x[i] = old - H
        neg = np.sum(f() * dout)
        x[i] = old
        grad[i] = (pos - neg) / (2 * H)
    return grad


# --------------------------------------------------------------------------- cases
# A case: make(rng, dtype) -> (arrays to differentiate, everything else);
# forward(m, arrays, other) -> (out, cache); backward(m, dout, cache) -> {name: gradient}.

def _f(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


def _case(make, forward, names, backward_name):
    def backward(m, dout, cache):
        grads = getattr(m, backward_name)(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return dict(zip(names, grads))
    return make, forward, backward


def _conv_case(conv_param):
    return _case(
        lambda rng, dt: ({"x": _f(rng, dt, 2, 2, 5, 5), "w": _f(rng, dt, 3, 2, 3, 2), "b": _f(rng, dt, 3)},
                         {"conv_param": conv_param}),
        lambda m, a, o: m.conv_forward_naive(a["x"], a["w"], a["b"], o["conv_param"]),
        ["x", "w", "b"], "conv_backward_naive")


def _pool_case(forward_name, backward_name, pool_param):
    return _case(
        lambda rng, dt: ({"x": _f(rng, dt, 2, 2, 5, 4)}, {"pool_param": pool_param}),
        lambda m, a, o: getattr(m, forward_name)(a["x"], o["pool_param"]),
        ["x"], backward_name)


def _ce_case(ce_param, labels):
    return _case(
        lambda rng, dt: ({"x": _f(rng, dt, 4, 3) * 2}, {"y": np.array(labels, dtype=np.int64), "ce": ce_param}),
        lambda m, a, o: m.cross_entropy_forward(a["x"], o["y"], o["ce"]),
        ["x"], "cross_entropy_backward")


CASES = {
    "affine": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 2, 3, 2), "w": _f(rng, dt, 6, 4), "b": _f(rng, dt, 4)}, {}),
        lambda m, a, o: m.affine_forward(a["x"], a["w"], a["b"]),
        ["x", "w", "b"], "affine_backward"),
    "batchnorm": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 4, 3) * 2 + 1, "gamma": _f(rng, dt, 3), "beta": _f(rng, dt, 3)},
                         {"bn": {"mode": "train", "eps": 1e-5, "momentum": 0.9}}),
        lambda m, a, o: m.batchnorm_forward(a["x"], a["gamma"], a["beta"], o["bn"]),
        ["x", "gamma", "beta"], "batchnorm_backward"),
    "spatial_batchnorm": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 2, 3, 2, 2), "gamma": _f(rng, dt, 3), "beta": _f(rng, dt, 3)},
                         {"bn": {"mode": "train", "eps": 1e-5}}),
        lambda m, a, o: m.spatial_batchnorm_forward(a["x"], a["gamma"], a["beta"], o["bn"]),
        ["x", "gamma", "beta"], "spatial_batchnorm_backward"),
    "layernorm": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 3, 5), "gamma": _f(rng, dt, 5), "beta": _f(rng, dt, 5)},
                         {"ln": {"eps": 1e-5}}),
        lambda m, a, o: m.layernorm_forward(a["x"], a["gamma"], a["beta"], o["ln"]),
        ["x", "gamma", "beta"], "layernorm_backward"),
    "rmsnorm": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 3, 5), "gamma": _f(rng, dt, 5)}, {"rms": {"eps": 1e-6}}),
        lambda m, a, o: m.rmsnorm_forward(a["x"], a["gamma"], o["rms"]),
        ["x", "gamma"], "rmsnorm_backward"),
    "groupnorm": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 2, 4, 2, 3), "gamma": _f(rng, dt, 1, 4, 1, 1),
                          "beta": _f(rng, dt, 1, 4, 1, 1)}, {"gn": {"eps": 1e-5}}),
        lambda m, a, o: m.spatial_groupnorm_forward(a["x"], a["gamma"], a["beta"], 2, o["gn"]),
        ["x", "gamma", "beta"], "spatial_groupnorm_backward"),
    "dropout_train": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 3, 4)}, {"p": {"p": 0.6, "mode": "train", "seed": 123}}),
        lambda m, a, o: m.dropout_forward(a["x"], o["p"]),
        ["x"], "dropout_backward"),
    "dropout_test": _case(
        lambda rng, dt: ({"x": _f(rng, dt, 3, 4)}, {"p": {"p": 0.6, "mode": "test", "seed": 123}}),
        lambda m, a, o: m.dropout_forward(a["x"], o["p"]),
        ["x"], "dropout_backward"),
    "conv_plain": _conv_case({"stride": 1, "pad": 0}),
    "conv_stride2_pad1": _conv_case({"stride": 2, "pad": 1}),
    "conv_pairs_dilation": _conv_case({"stride": (2, 1), "pad": (1, 0), "dilation": (2, 1)}),
    "conv_dilation2": _conv_case({"stride": 1, "pad": 2, "dilation": 2}),
    "maxpool_2x2_s2": _pool_case("max_pool_forward_naive", "max_pool_backward_naive",
                                 {"pool_height": 2, "pool_width": 2, "stride": 2}),
    "maxpool_overlap": _pool_case("max_pool_forward_naive", "max_pool_backward_naive",
                                  {"pool_height": 3, "pool_width": 2, "stride": 1}),
    "avgpool_plain": _pool_case("avg_pool_forward", "avg_pool_backward",
                                {"pool_height": 2, "pool_width": 2, "stride": 2}),
    "avgpool_pad_include": _pool_case("avg_pool_forward", "avg_pool_backward",
                                      {"pool_height": 3, "pool_width": 2, "stride": 1, "pad": 1}),
    "avgpool_pad_exclude": _pool_case("avg_pool_forward", "avg_pool_backward",
                                      {"pool_height": 3, "pool_width": 3, "stride": 2, "pad": 1,
                                       "count_include_pad": False}),
    "embedding": _case(
        lambda rng, dt: ({"W": _f(rng, dt, 5, 3)}, {"x": np.array([[0, 3, 3], [4, 0, 3]], dtype=np.int64)}),
        lambda m, a, o: m.word_embedding_forward(o["x"], a["W"]),
        ["W"], "word_embedding_backward"),
}
for _red in ("mean", "sum", "none"):
    for _eps in (0.0, 0.2):
        CASES[f"cross_entropy_{_red}_ls{_eps}"] = _ce_case(
            {"ignore_index": -100, "label_smoothing": _eps, "reduction": _red}, [2, -100, 0, 1])
CASES["cross_entropy_ignore_class_1"] = _ce_case(
    {"ignore_index": 1, "label_smoothing": 0.1, "reduction": "mean"}, [2, 1, 0, 1])


def _random_dout(rng, out, dtype):
    if np.ndim(out) == 0:
        return dtype(rng.uniform(0.5, 1.5))
    return rng.standard_normal(np.shape(out)).astype(dtype)


# ------------------------------------------------------------------ gradient checks

@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("case", CASES)
def test_backward_matches_central_differences(module, case):
    m = MODULES[module]
    make, forward, backward = CASES[case]
    rng = np.random.default_rng(0)
    arrays, other = make(rng, np.float64)
    out, cache = forward(m, arrays, other)
    dout = _random_dout(rng, out, np.float64)
    grads = backward(m, dout, cache)
    assert set(grads) == set(arrays)
    for name, x in arrays.items():
        assert grads[name].shape == x.shape, name
        num = numeric_gradient(lambda: forward(m, arrays, other)[0], x, dout)
        assert rel_error(grads[name], num) < TOL, (name, rel_error(grads[name], num))


@pytest.mark.parametrize("module", MODULES)
def test_softmax_loss_matches_central_differences(module):
    m = MODULES[module]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5)) * 2, np.array([0, 4, 2, 2])
    loss, dx = m.softmax_loss(x, y)
    num = numeric_gradient(lambda: m.softmax_loss(x, y)[0], x, 1.0)
    assert rel_error(dx, num) < TOL


@pytest.mark.parametrize("case", CASES)
def test_the_two_modules_agree(case):
    make, forward, backward = CASES[case]
    rng = np.random.default_rng(0)
    arrays, other = make(rng, np.float64)
    out_r, cache_r = forward(reference_layers, arrays, other)
    out_e, cache_e = forward(example_layers, arrays, other)
    np.testing.assert_allclose(out_e, out_r, rtol=1e-12, atol=1e-12)
    dout = _random_dout(rng, out_r, np.float64)
    grads_r, grads_e = backward(reference_layers, dout, cache_r), backward(example_layers, dout, cache_e)
    for name in arrays:
        np.testing.assert_allclose(grads_e[name], grads_r[name], rtol=1e-10, atol=1e-12, err_msg=name)


# ------------------------------------------------------------- dtype and purity

@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("case", CASES)
def test_float32_in_float32_out(module, case):
    m = MODULES[module]
    make, forward, backward = CASES[case]
    rng = np.random.default_rng(0)
    arrays, other = make(rng, np.float32)
    out, cache = forward(m, arrays, other)
    assert np.asarray(out).dtype == np.float32
    grads = backward(m, _random_dout(rng, out, np.float32), cache)
    for name, g in grads.items():
        assert g.dtype == np.float32, name


@pytest.mark.parametrize("module", MODULES)
def test_softmax_loss_float32(module):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    loss, dx = MODULES[module].softmax_loss(x, np.array([0, 1, 3]))
    assert np.asarray(loss).dtype == np.float32 and dx.dtype == np.float32


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("case", CASES)
def test_inputs_are_not_changed_in_place(module, case):
    m = MODULES[module]
    make, forward, backward = CASES[case]
    rng = np.random.default_rng(0)
    arrays, other = make(rng, np.float64)
    arrays_before, other_before = copy.deepcopy(arrays), copy.deepcopy(other)
    out, cache = forward(m, arrays, other)
    dout = _random_dout(rng, out, np.float64)
    dout_before = np.copy(dout)
    backward(m, dout, cache)
    for name in arrays:
        np.testing.assert_array_equal(arrays[name], arrays_before[name], err_msg=name)
    for name in other:
        if isinstance(other[name], np.ndarray):
            np.testing.assert_array_equal(other[name], other_before[name], err_msg=name)
        else:
            assert _without_running(other[name]) == _without_running(other_before[name]), name
    np.testing.assert_array_equal(dout, dout_before)


def _without_running(param):
    """A parameter dict without CS231n's running averages, the one thing batchnorm_forward writes back
    into bn_param (its documented way of returning them); anything else changed is a bug."""
    if not isinstance(param, dict):
        return param
    return {k: v for k, v in param.items() if k not in ("running_mean", "running_var")}


# ------------------------------------------------------------- values by hand

@pytest.mark.parametrize("module", MODULES)
def test_affine_on_small_integers(module):
    m = MODULES[module]
    x = np.array([[[1.0, 2.0]], [[3.0, 4.0]]])                      # (2, 1, 2)
    w = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    b = np.array([1.0, 1.0, 1.0])
    out, cache = m.affine_forward(x, w, b)
    np.testing.assert_array_equal(out, [[2, 3, 1], [4, 5, 3]])
    dx, dw, db = m.affine_backward(np.ones((2, 3)), cache)
    np.testing.assert_array_equal(dx, [[[3, 0]], [[3, 0]]])
    np.testing.assert_array_equal(dw, [[4, 4, 4], [6, 6, 6]])
    np.testing.assert_array_equal(db, [2, 2, 2])


@pytest.mark.parametrize("module", MODULES)
def test_maxpool_routes_to_the_first_of_two_equal_maxima(module):
    m = MODULES[module]
    x = np.array([[[[1.0, 5.0], [5.0, 2.0]]]])
    out, cache = m.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    np.testing.assert_array_equal(out, [[[[5.0]]]])
    dx = m.max_pool_backward_naive(np.array([[[[3.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 3.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("module", MODULES)
def test_embedding_accumulates_a_repeated_index(module):
    m = MODULES[module]
    W = np.arange(6.0).reshape(3, 2)
    x = np.array([[0, 2, 0]])
    out, cache = m.word_embedding_forward(x, W)
    np.testing.assert_array_equal(out, [[[0, 1], [4, 5], [0, 1]]])
    dW = m.word_embedding_backward(np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]), cache)
    np.testing.assert_array_equal(dW, [[6, 8], [0, 0], [3, 4]])


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_with_every_label_ignored(module, label_smoothing):
    m = MODULES[module]
    x = np.random.default_rng(0).standard_normal((3, 4))
    y = np.full(3, -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, cache = m.cross_entropy_forward(x, y, {"label_smoothing": label_smoothing, "reduction": "sum"})
        assert loss == 0
        np.testing.assert_array_equal(m.cross_entropy_backward(1.0, cache), np.zeros((3, 4)))
        loss, cache = m.cross_entropy_forward(x, y, {"label_smoothing": label_smoothing, "reduction": "mean"})
        assert np.isnan(loss)                                       # 0/0, as torch gives
        np.testing.assert_array_equal(m.cross_entropy_backward(1.0, cache), np.zeros((3, 4)))
        losses, cache = m.cross_entropy_forward(x, y, {"label_smoothing": label_smoothing, "reduction": "none"})
        np.testing.assert_array_equal(losses, np.zeros(3))


@pytest.mark.parametrize("module", MODULES)
def test_cross_entropy_label_smoothing_by_hand(module):
    # softmax([0, ln 3]) = [1/4, 3/4]; y = 1, ε = 1/2: q = [1/4, 3/4], so the gradient is 0 and
    # loss = −(1/4·ln(1/4) + 3/4·ln(3/4)) = ln 4 − (3/4)·ln 3
    m = MODULES[module]
    x = np.array([[0.0, math.log(3.0)]])
    loss, cache = m.cross_entropy_forward(x, np.array([1]), {"label_smoothing": 0.5, "reduction": "mean"})
    assert loss == pytest.approx(math.log(4.0) - 0.75 * math.log(3.0), rel=1e-14)
    np.testing.assert_allclose(m.cross_entropy_backward(1.0, cache), 0, atol=1e-15)


@pytest.mark.parametrize("module", MODULES)
def test_softmax_loss_on_uniform_logits(module):
    m = MODULES[module]
    loss, dx = m.softmax_loss(np.zeros((2, 3)), np.array([0, 2]))
    assert loss == pytest.approx(math.log(3.0), rel=1e-14)
    np.testing.assert_allclose(dx, [[-1 / 3, 1 / 6, 1 / 6], [1 / 6, 1 / 6, -1 / 3]], rtol=1e-14)


@pytest.mark.parametrize("module", MODULES)
def test_conv_by_hand(module):
    m = MODULES[module]
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out, _ = m.conv_forward_naive(x, np.ones((1, 1, 2, 2)), np.array([0.5]), {"stride": 1, "pad": 0})
    np.testing.assert_array_equal(out, [[[[8.5, 12.5], [20.5, 24.5]]]])
    dilated = {"stride": 1, "pad": 0, "dilation": 2}
    out, cache = m.conv_forward_naive(x, np.ones((1, 1, 2, 2)), np.zeros(1), dilated)
    np.testing.assert_array_equal(out, [[[[0 + 2 + 6 + 8.0]]]])          # the four corners
    dx, dw, db = m.conv_backward_naive(np.ones((1, 1, 1, 1)), cache)
    np.testing.assert_array_equal(dx, [[[[1, 0, 1], [0, 0, 0], [1, 0, 1]]]])
    np.testing.assert_array_equal(dw, [[[[0, 2], [6, 8]]]])


@pytest.mark.parametrize("module", MODULES)
def test_avgpool_padding_counted_or_not(module):
    m = MODULES[module]
    x = np.ones((1, 1, 2, 2))
    param = {"pool_height": 2, "pool_width": 2, "stride": 1, "pad": 1}
    out, _ = m.avg_pool_forward(x, param)
    np.testing.assert_array_equal(out[0, 0], [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]])
    out, cache = m.avg_pool_forward(x, {**param, "count_include_pad": False})
    np.testing.assert_array_equal(out[0, 0], np.ones((3, 3)))
    dx = m.avg_pool_backward(np.ones((1, 1, 3, 3)), cache)            # corners 1, edges 1/2 twice, centre 1/4 ×4
    np.testing.assert_array_equal(dx[0, 0], [[1 + 0.5 + 0.5 + 0.25] * 2] * 2)


@pytest.mark.parametrize("module", MODULES)
def test_dropout_mask_is_the_contracts(module):
    m = MODULES[module]
    x = np.random.default_rng(0).standard_normal((4, 5))
    out, _ = m.dropout_forward(x, {"p": 0.7, "mode": "train", "seed": 7})
    np.random.seed(7)
    np.testing.assert_array_equal(out, x * ((np.random.rand(4, 5) < 0.7) / 0.7))
