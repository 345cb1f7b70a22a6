"""The high-precision arbiter (oracles/numeric.py) checked against things it shares
no code with: Richardson-extrapolated differences of a plain float64 forward
written here, a hand-computed neuron, and direct mpmath evaluations. Meta-tests
show the comparison used here can fail, and does, on known-wrong gradients.
"""
import math

import numpy as np
import pytest
from mpmath import mp, mpf

from oracles import numeric
from oracles.numeric import backprop, richardson_grad

ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus",
               "elu", "gelu", "gelu_tanh", "silu"]
KINKED = {"relu", "leaky_relu", "elu"}              # not smooth at z = 0
LOSSES = ["sse", "half_sse", "mse", "quadratic", "binary_cross_entropy",
          "bce_with_logits", "softmax_cross_entropy"]
LAST = {"binary_cross_entropy": "sigmoid", "bce_with_logits": "identity",
        "softmax_cross_entropy": "identity"}
BOUND = 1e-8                                          # mpmath vs Richardson, normwise

# ------------------------------------------- a plain float64 forward (loss only)

_erf = np.vectorize(math.erf)
F64_ACT = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "gelu": lambda z: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
    "silu": lambda z: z / (1 + np.exp(-z)),
}


def _logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


F64_LOSS = {
    "sse": lambda a, y: ((a - y) ** 2).sum(),
    "half_sse": lambda a, y: 0.5 * ((a - y) ** 2).sum(),
    "mse": lambda a, y: ((a - y) ** 2).mean(),
    "quadratic": lambda a, y: ((a - y) ** 2).sum() / (2 * a.shape[0]),
    "binary_cross_entropy": lambda a, y: -(y * np.log(a) + (1 - y) * np.log1p(-a)).mean(),
    "bce_with_logits": lambda z, y: (np.logaddexp(0.0, z) - y * z).mean(),
    "softmax_cross_entropy": lambda z, y: (_logsumexp(z) - z[np.arange(len(y)), y]).mean(),
}


def forward64(spec, params, x, y):
    a = x
    for i, layer in enumerate(spec["layers"]):
        a = F64_ACT[layer["activation"]](a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"])
    return F64_LOSS[spec["loss"]](a, y)


# ----------------------------------------------------------------- helpers

def make_case(activations, loss, dims=(3, 4, 4, 2), batch=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    spec = {"input_dim": dims[0], "loss": loss, "dtype": np.dtype(dtype).name,
            "layers": [{"units": u, "activation": a} for u, a in zip(dims[1:], activations)]}
    params = {}
    for i, (fan_in, units) in enumerate(zip(dims, dims[1:])):
        params[f"layers.{i}.W"] = (rng.normal(size=(units, fan_in)) / math.sqrt(fan_in)).astype(dtype)
        params[f"layers.{i}.b"] = (0.5 * rng.normal(size=units)).astype(dtype)
    x = rng.normal(size=(batch, dims[0])).astype(dtype)
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, dims[-1], size=batch)
    elif loss in ("binary_cross_entropy", "bce_with_logits"):
        y = rng.uniform(0, 1, size=(batch, dims[-1])).astype(dtype)
    else:
        y = rng.normal(size=(batch, dims[-1])).astype(dtype)
    return spec, params, x, y


def smooth_case(activations, loss, margin=0.05, **kw):
    """A case whose pre-activations all stay `margin` away from kinks, so that
    differences with steps <= 1e-3 never straddle one."""
    for seed in range(100):
        case = make_case(activations, loss, seed=seed, **kw)
        res = backprop(*case, dps=20)
        z = res["pre_activations"]
        if all(np.abs(z[f"layers.{i}"]).min() > margin
               for i, act in enumerate(activations) if act in KINKED) and all(
                np.any(g) for g in res["grads"].values()):        # no layer entirely dead
            return case
    raise AssertionError("no seed keeps the pre-activations away from the kinks")


def flat(params):
    return np.concatenate([params[k].ravel() for k in sorted(params)])


def unflat(theta, like):
    out, start = {}, 0
    for k in sorted(like):
        out[k] = theta[start:start + like[k].size].reshape(like[k].shape)
        start += like[k].size
    return out


def rel_err(g, g_star):
    return np.linalg.norm(g - g_star) / np.linalg.norm(g_star)


def check_close(g, g_star, bound=BOUND, what="gradient"):
    err = rel_err(g, g_star)
    assert err < bound, f"{what}: normwise relative error {err:.3g} >= {bound:.0e}"


def richardson_case(spec, params, x, y):
    """Richardson gradients of the float64 loss w.r.t. all parameters and x."""
    g_params = richardson_grad(lambda t: forward64(spec, unflat(t, params), x, y), flat(params))
    g_x = richardson_grad(lambda t: forward64(spec, params, t.reshape(x.shape), y), x.ravel())
    return g_params, g_x.reshape(x.shape)


# ------------------------------------- (a) agreement with Richardson differences

def _check_against_richardson(case):
    spec, params, x, y = case
    res = backprop(*case)
    g_params, g_x = richardson_case(*case)
    assert res["loss"] == pytest.approx(forward64(*case), rel=1e-12)
    check_close(flat(res["grads"]), g_params, what="parameter gradients")
    check_close(res["input_grad"], g_x, what="input gradient")


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_gradients_match_richardson(act):
    _check_against_richardson(smooth_case([act] * 3, "half_sse"))


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_gradients_match_richardson(loss):
    _check_against_richardson(smooth_case(["tanh", "softplus", LAST.get(loss, "sigmoid")], loss))


def test_intermediates_are_consistent():
    """z, a match the float64 forward; dC/db = sum_b delta, dC/dW = delta^T a_prev."""
    spec, params, x, y = case = smooth_case(["gelu", "elu", "identity"], "mse")
    res = backprop(*case)
    a_prev = x
    for i, layer in enumerate(spec["layers"]):
        name = f"layers.{i}"
        z = a_prev @ params[f"{name}.W"].T + params[f"{name}.b"]
        np.testing.assert_allclose(res["pre_activations"][name], z, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(res["activations"][name], F64_ACT[layer["activation"]](z),
                                   rtol=1e-12, atol=1e-14)
        delta = res["deltas"][name]
        np.testing.assert_allclose(res["grads"][f"{name}.b"], delta.sum(axis=0), rtol=1e-13)
        np.testing.assert_allclose(res["grads"][f"{name}.W"], delta.T @ a_prev, rtol=1e-13)
        a_prev = res["activations"][name]
    assert all(v.dtype == np.float64 for v in res["grads"].values())


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_more_digits_change_nothing_in_float64(act):
    case = make_case([act, act, "identity"], "softmax_cross_entropy")
    lo, hi = backprop(*case, dps=30), backprop(*case, dps=80)
    assert lo["loss"] == pytest.approx(hi["loss"], rel=4e-16)
    check_close(flat(lo["grads"]), flat(hi["grads"]), bound=1e-15)
    check_close(lo["input_grad"], hi["input_grad"], bound=1e-15)


# -------------------------------------------------- (b) a hand-computed neuron

def test_one_neuron_by_hand():
    """C = u^2, u = w1*1 + w2*2 + b - 10: dC/dw1 = 2u, dC/dw2 = 4u, dC/db = 2u."""
    w1, w2, b = 0.5, -1.25, 0.75                      # exact in binary, so is everything below
    u = w1 + 2 * w2 + b - 10                          # -11.25
    spec = {"input_dim": 2, "layers": [{"units": 1, "activation": "identity"}],
            "loss": "sse", "dtype": "float64"}
    params = {"layers.0.W": np.array([[w1, w2]]), "layers.0.b": np.array([b])}
    res = backprop(spec, params, np.array([[1.0, 2.0]]), np.array([[10.0]]))
    assert res["loss"] == u * u
    np.testing.assert_array_equal(res["grads"]["layers.0.W"], [[2 * u * 1, 2 * u * 2]])
    np.testing.assert_array_equal(res["grads"]["layers.0.b"], [2 * u])
    np.testing.assert_array_equal(res["input_grad"], [[2 * u * w1, 2 * u * w2]])
    np.testing.assert_array_equal(res["deltas"]["layers.0"], [[2 * u]])


# ------------------------------------------------ (c) the check can fail (meta)

@pytest.fixture(scope="module")
def truth():
    case = smooth_case(["tanh", "sigmoid", "identity"], "quadratic", dims=(3, 4, 4, 4))
    return case, backprop(*case), richardson_case(*case)[0]


def test_meta_unperturbed_passes(truth):
    _, res, g_rich = truth
    check_close(flat(res["grads"]), g_rich)


@pytest.mark.parametrize("perturb", [
    lambda g: g.update({"layers.0.W": 2 * g["layers.0.W"]}),             # doubled tensor
    lambda g: g["layers.1.W"].__setitem__((1, 2), 2 * g["layers.1.W"][1, 2]),  # one entry
    lambda g: g.update({"layers.1.W": g["layers.1.W"].T.copy()}),        # transposed
    lambda g: g.update({k: 0.5 * v for k, v in g.items()}),              # missing factor 2
    lambda g: g.update({"layers.2.b": -g["layers.2.b"]}),                # sign flip
], ids=["double-tensor", "double-entry", "transpose", "half", "sign"])
def test_meta_wrong_gradient_is_detected(truth, perturb):
    _, res, g_rich = truth
    grads = {k: v.copy() for k, v in res["grads"].items()}
    perturb(grads)
    with pytest.raises(AssertionError, match="normwise relative error"):
        check_close(flat(grads), g_rich)


def test_meta_wrong_local_derivative_is_detected(monkeypatch):
    """Break tanh's derivative inside the tape (1 - tanh instead of 1 - tanh^2)."""
    case = smooth_case(["tanh", "identity"], "mse", dims=(3, 4, 2))
    wrong = np.frompyfunc(lambda z: (mp.tanh(z), 1 - mp.tanh(z)), 1, 2)
    monkeypatch.setitem(numeric.ACTIVATIONS, "tanh", wrong)
    with pytest.raises(AssertionError, match="normwise relative error"):
        _check_against_richardson(case)


def test_unknown_names_raise():
    spec, params, x, y = make_case(["tanh", "tanh", "identity"], "mse")
    with pytest.raises(ValueError, match="swish"):
        backprop({**spec, "layers": [{"units": 4, "activation": "swish"}] * 3}, params, x, y)
    with pytest.raises(ValueError, match="hinge"):
        backprop({**spec, "loss": "hinge"}, params, x, y)


# -------------------------------------- (d) float32 inputs at their exact values

def test_float32_inputs_taken_exactly():
    """One identity layer, sse: the loss is sum (x W^T + b - y)^2 of the float32
    values upcast exactly, not of their shortest decimals (0.1f is not 0.1)."""
    spec = {"input_dim": 2, "layers": [{"units": 2, "activation": "identity"}],
            "loss": "sse", "dtype": "float32"}
    params = {"layers.0.W": np.array([[0.1, 0.2], [0.3, -0.7]], np.float32),
              "layers.0.b": np.array([0.05, -0.15], np.float32)}
    x, y = np.array([[1.3, -2.1]], np.float32), np.array([[0.33, 0.9]], np.float32)
    res = backprop(spec, params, x, y)

    def loss_of(convert):
        with mp.workdps(50):
            W = [[convert(v) for v in row] for row in params["layers.0.W"]]
            b, xs, ys = ([convert(v) for v in arr] for arr in (params["layers.0.b"], x[0], y[0]))
            return float(sum((sum(W[j][k] * xs[k] for k in range(2)) + b[j] - ys[j]) ** 2
                             for j in range(2)))

    exact = loss_of(lambda v: mpf(float(np.float64(v))))   # float32 -> float64 is exact
    decimal = loss_of(lambda v: mpf(str(v)))              # shortest float32 decimal, e.g. "0.1"
    assert res["loss"] == exact
    assert abs(decimal - exact) > 1e-9 * abs(exact)          # the distinction is visible
    as64 = backprop({**spec, "dtype": "float64"}, {k: v.astype(np.float64) for k, v in params.items()},
                    x.astype(np.float64), y.astype(np.float64))
    assert as64["loss"] == res["loss"]
    for k in params:
        assert res["grads"][k].dtype == np.float64
        np.testing.assert_array_equal(res["grads"][k], as64["grads"][k])


# ------------------------------- cancellation-free where float64 formulas are not

def test_saturated_cases_keep_their_digits():
    """Where naive float64 returns 0 (or 1 - 1), the arbiter still has the answer."""
    one = {"input_dim": 1, "dtype": "float64"}
    W = {"layers.0.W": np.array([[1.0]]), "layers.0.b": np.array([0.0])}
    with mp.workdps(60):
        # softmax CE, confidently right: loss = log1p(e^-40)
        spec = {**one, "input_dim": 2, "loss": "softmax_cross_entropy",
                "layers": [{"units": 2, "activation": "identity"}]}
        p = {"layers.0.W": np.eye(2), "layers.0.b": np.zeros(2)}
        res = backprop(spec, p, np.array([[40.0, 0.0]]), np.array([0]))
        assert res["loss"] == pytest.approx(float(mp.log1p(mp.exp(-40))), rel=1e-15)
        assert res["grads"]["layers.0.b"][0] == pytest.approx(-float(mp.exp(-40) / (1 + mp.exp(-40))), rel=1e-15)
        # tanh'(25) = sech^2(25) ~ 7.7e-22; 1 - tanh^2 in float64 is 0
        spec = {**one, "loss": "sse", "layers": [{"units": 1, "activation": "tanh"}]}
        res = backprop(spec, W, np.array([[25.0]]), np.array([[0.0]]))
        expect = 2 * mp.tanh(25) * mp.sech(25) ** 2
        assert res["grads"]["layers.0.b"][0] == pytest.approx(float(expect), rel=1e-15)
        # bce_with_logits at z = 50, y = 1: loss = log1p(e^-50), grad = -sigma(-50)
        spec = {**one, "loss": "bce_with_logits", "layers": [{"units": 1, "activation": "identity"}]}
        res = backprop(spec, W, np.array([[50.0]]), np.array([[1.0]]))
        assert res["loss"] == pytest.approx(float(mp.log1p(mp.exp(-50))), rel=1e-15)
        assert res["grads"]["layers.0.b"][0] == pytest.approx(-float(1 / (1 + mp.exp(50))), rel=1e-15)
        # sigmoid + BCE at z = 120, y = 1: 1 - a has no digits left at dps = 50, so
        # the case is redone with more: loss = log1p(e^-120), dC/dz = a - y = -sigma(-120)
        spec = {**one, "loss": "binary_cross_entropy", "layers": [{"units": 1, "activation": "sigmoid"}]}
        res = backprop(spec, W, np.array([[120.0]]), np.array([[1.0]]))
        assert res["loss"] == pytest.approx(float(mp.log1p(mp.exp(-120))), rel=1e-15)
        assert res["grads"]["layers.0.b"][0] == pytest.approx(-float(1 / (1 + mp.exp(120))), rel=1e-15)
