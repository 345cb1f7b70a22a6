"""The seed tutorials' worked examples, checked against the NumPy reference.

Every expected value here is worked out by hand in the test — closed-form, as
the tutorial derives it — never copied from the reference's output. Where a
tutorial slips (its equations have known typos) the test says so and checks
the corrected form.

Tutorials (column-vector notation; the reference is batch-major, the transpose):
  000  sum-of-squares cost, the one-neuron example (1, 2) -> 10, the scalar
       ReLU chain a0 -> w1 -> a1 -> w2 -> a2 -> w3 -> a3
  001  logistic regression with log-loss: per-example loop, then vectorised
  002  gradient descent on f'(x) = 4x^3 - 9x^2; sigma' = sigma (1 - sigma)
  004  the quadratic cost and the four equations BP1-BP4
"""
import math

import numpy as np
import pytest

from reference.activations import ACTIVATIONS, sigmoid
from reference.network import backprop
from reference.optim import sgd_step


def central_difference(f, params, h=1e-6):
    """dC/dp for every entry of every array in ``params`` by (f(p+h) - f(p-h)) / 2h, float64."""
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p, dtype=np.float64)
        for idx in np.ndindex(p.shape):
            plus = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
            minus = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            g[idx] = (f(plus) - f(minus)) / (2 * h)
        grads[name] = g
    return grads


def logistic(z):
    """sigma(z) = 1 / (1 + e^{-z}), written out here independently of the reference."""
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------
# Tutorial 000: one neuron, data (1, 2) -> 10, C = (y_hat - y)^2
# --------------------------------------------------------------------------

ONE_NEURON = {
    "input_dim": 2,
    "layers": [{"units": 1, "activation": "identity"}],
    "loss": "sse",
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "w1, w2, b, u",
    [
        # u = 1*w1 + 2*w2 + b - 10, worked out by hand (all values exact in binary)
        (0.5, -1.25, 0.75, -11.25),
        (3.0, 2.5, 1.5, -0.5),
        (4.0, 3.0, 0.25, 0.25),
    ],
)
def test_one_neuron_partial_derivatives(w1, w2, b, u, dtype):
    """dC/dw1 = 2u*a1, dC/dw2 = 2u*a2, dC/db = 2u with a = (1, 2), y = 10 (tutorial 000)."""
    a1, a2, y = 1.0, 2.0, 10.0
    assert 1 * w1 + 2 * w2 + b - 10 == u  # the hand value of u is the tutorial's u

    out = backprop(
        {**ONE_NEURON, "dtype": dtype},
        {"layers.0.W": np.array([[w1, w2]]), "layers.0.b": np.array([b])},
        np.array([[a1, a2]]),
        np.array([[y]]),
    )

    # Every number below is exact in binary, so equality is exact in both dtypes.
    assert out["loss"] == u * u
    np.testing.assert_array_equal(out["grads"]["layers.0.W"], [[2 * u * a1, 2 * u * a2]])
    np.testing.assert_array_equal(out["grads"]["layers.0.b"], [2 * u])
    # and the input gradient, by the same chain: dC/da_j = 2u * w_j
    np.testing.assert_array_equal(out["input_grad"], [[2 * u * w1, 2 * u * w2]])


def test_one_neuron_first_example_in_numbers():
    """The first case written out in plain numbers: u = 0.5 - 2.5 + 0.75 - 10 = -11.25."""
    out = backprop(
        {**ONE_NEURON, "dtype": "float64"},
        {"layers.0.W": np.array([[0.5, -1.25]]), "layers.0.b": np.array([0.75])},
        np.array([[1.0, 2.0]]),
        np.array([[10.0]]),
    )
    assert out["loss"] == 126.5625  # (-11.25)^2
    np.testing.assert_array_equal(out["grads"]["layers.0.W"], [[-22.5, -45.0]])
    np.testing.assert_array_equal(out["grads"]["layers.0.b"], [-22.5])


# --------------------------------------------------------------------------
# Tutorial 000: the scalar chain a0 -> w1 -> a1 -> w2 -> a2 -> w3 -> a3
# --------------------------------------------------------------------------

CHAIN = {
    "input_dim": 1,
    "layers": [
        {"units": 1, "activation": "relu"},
        {"units": 1, "activation": "relu"},
        {"units": 1, "activation": "identity"},
    ],
    "loss": "sse",
    "dtype": "float64",
}


def relu_prime(z):
    return 1.0 if z > 0 else 0.0  # relu'(0) = 0, the project's convention


def chain_by_hand(a0, y, w1, b1, w2, b2, w3, b3):
    """Forward and the delta-form (BP1/BP2) chain rule for the scalar chain, in plain floats."""
    z1 = a0 * w1 + b1
    a1 = max(z1, 0.0)
    z2 = a1 * w2 + b2
    a2 = max(z2, 0.0)
    a3 = a2 * w3 + b3
    e = a3 - y
    d3 = 2 * e  # BP1, identity output: dC/dz3 = 2e
    d2 = d3 * w3 * relu_prime(z2)  # BP2
    d1 = d2 * w2 * relu_prime(z1)  # BP2
    return {
        "z1": z1, "a1": a1, "z2": z2, "a2": a2, "a3": a3, "e": e,
        "layers.2.W": d3 * a2,  # 2e * a2
        "layers.2.b": d3,  # 2e
        "layers.1.W": d2 * a1,  # 2e * w3 * relu'(z2) * a1
        "layers.1.b": d2,
        "layers.0.W": d1 * a0,  # 2e * w3 * relu'(z2) * w2 * relu'(z1) * a0
        "layers.0.b": d1,
    }


def run_chain(a0, y, w1, b1, w2, b2, w3, b3):
    params = {
        "layers.0.W": np.array([[w1]]), "layers.0.b": np.array([b1]),
        "layers.1.W": np.array([[w2]]), "layers.1.b": np.array([b2]),
        "layers.2.W": np.array([[w3]]), "layers.2.b": np.array([b3]),
    }
    return backprop(CHAIN, params, np.array([[a0]]), np.array([[y]]))


# (a0, y, w1, b1, w2, b2, w3, b3), chosen so every intermediate is exact in binary
CHAIN_ALIVE = (1.5, 3.0, 0.5, 0.25, -0.75, 2.0, 2.0, -0.5)  # z1 = 1, z2 = 1.25
CHAIN_SECOND_DEAD = (1.5, 3.0, 0.5, 0.25, -0.75, -1.0, 2.0, -0.5)  # z2 = -1.75: a2 = 0
CHAIN_FIRST_DEAD = (1.5, 3.0, 0.5, -2.0, -0.75, 2.0, 2.0, -0.5)  # z1 = -1.25: a1 = 0


@pytest.mark.parametrize(
    "case", [CHAIN_ALIVE, CHAIN_SECOND_DEAD, CHAIN_FIRST_DEAD], ids=["alive", "a2-dead", "a1-dead"]
)
def test_scalar_chain_matches_closed_form_chain_rule(case):
    hand = chain_by_hand(*case)
    out = run_chain(*case)
    for name in ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b", "layers.2.W", "layers.2.b"]:
        assert out["grads"][name].item() == hand[name], name
    assert out["loss"] == hand["e"] ** 2
    assert out["activations"]["layers.2"].item() == hand["a3"]


def test_scalar_chain_alive_in_numbers():
    """a0 = 1.5: z1 = 1, a1 = 1; z2 = -0.75 + 2 = 1.25 = a2; a3 = 2.5 - 0.5 = 2; e = 2 - 3 = -1."""
    g = run_chain(*CHAIN_ALIVE)["grads"]
    assert g["layers.2.W"].item() == -2.5  # 2e * a2 = -2 * 1.25
    assert g["layers.2.b"].item() == -2.0  # 2e
    assert g["layers.1.W"].item() == -4.0  # 2e * w3 * 1 * a1 = -2 * 2 * 1
    assert g["layers.1.b"].item() == -4.0
    assert g["layers.0.W"].item() == 4.5  # -4 * w2 * 1 * a0 = -4 * -0.75 * 1.5
    assert g["layers.0.b"].item() == 3.0


def tutorial_division_form(hand, a0, w2, w3):
    """Tutorial 000's derivation: each gradient from the next one, divided by an activation.

    dC/dw2 = dC/dw3 / a2 * w3 * relu'(z2) * a1
    dC/dw1 = dC/dw2 / a1 * w2 * relu'(z1) * a0
    """
    dw3 = 2 * hand["e"] * hand["a2"]
    dw2 = dw3 / hand["a2"] * w3 * relu_prime(hand["z2"]) * hand["a1"]
    dw1 = dw2 / hand["a1"] * w2 * relu_prime(hand["z1"]) * a0
    return np.float64(dw2), np.float64(dw1)


def test_tutorial_division_form_agrees_while_every_relu_is_alive():
    a0, y, w1, b1, w2, b2, w3, b3 = CHAIN_ALIVE
    hand = chain_by_hand(*CHAIN_ALIVE)
    dw2, dw1 = tutorial_division_form(
        {k: np.float64(v) for k, v in hand.items()}, a0, w2, w3
    )
    g = run_chain(*CHAIN_ALIVE)["grads"]
    assert dw2 == g["layers.1.W"].item() == -4.0
    assert dw1 == g["layers.0.W"].item() == 4.5


@pytest.mark.parametrize(
    "case, dead", [(CHAIN_SECOND_DEAD, "a2"), (CHAIN_FIRST_DEAD, "a1")], ids=["a2-dead", "a1-dead"]
)
def test_dead_relu_breaks_the_tutorial_division_but_not_bp2(case, dead):
    """Why the reference uses BP2 and not tutorial 000's division.

    The tutorial gets dC/dw2 from dC/dw3 = 2e * a2 by dividing a2 back out:
    dC/dw2 = dC/dw3 / a2 * w3 * relu'(z2) * a1. When the ReLU is dead (z2 <= 0)
    a2 = 0, so dC/dw3 = 0 and the division is 0 / 0 = nan, which then poisons
    every earlier layer (the same happens one step down when a1 = 0). The true
    derivative is 0: w2 cannot move C while z2 <= 0. BP2 never divides — it
    carries delta = dC/dz backwards, delta_2 = delta_3 * w3 * relu'(z2), and
    multiplies by a1 only at the end (BP4) — so it gives the exact 0.
    """
    a0, y, w1, b1, w2, b2, w3, b3 = case
    hand = chain_by_hand(*case)
    assert hand[dead] == 0.0

    with np.errstate(invalid="ignore", divide="ignore"):
        dw2, dw1 = tutorial_division_form({k: np.float64(v) for k, v in hand.items()}, a0, w2, w3)
    if dead == "a2":
        assert np.isnan(dw2)
    else:
        assert dw2 == 0.0  # a1 = 0 is only divided by one step further down
    assert np.isnan(dw1)  # dead a2 poisons dw1 through dw2; dead a1 divides 0/0 itself

    g = run_chain(*case)["grads"]
    assert g["layers.1.W"].item() == hand["layers.1.W"]
    assert g["layers.0.W"].item() == 0.0
    assert g["layers.0.b"].item() == 0.0
    if dead == "a2":
        assert g["layers.1.W"].item() == 0.0
        assert g["layers.1.b"].item() == 0.0
        assert g["layers.2.W"].item() == 0.0  # 2e * a2 with a2 = 0
        assert g["layers.2.b"].item() == 2 * (b3 - 3.0)  # a3 = b3, e = -3.5, 2e = -7
    assert all(np.isfinite(v).all() for v in g.values())


# --------------------------------------------------------------------------
# Tutorial 001: logistic regression with log-loss
# --------------------------------------------------------------------------

LOGREG = {
    "input_dim": 2,
    "layers": [{"units": 1, "activation": "sigmoid"}],
    "loss": "binary_cross_entropy",
    "dtype": "float64",
}


@pytest.fixture
def logreg_problem():
    rng = np.random.default_rng(1)
    m = 7
    X = rng.normal(size=(m, 2))
    Y = rng.integers(0, 2, size=(m, 1)).astype(np.float64)
    w = rng.normal(size=2)
    b = float(rng.normal())
    return X, Y, w, b


def test_logistic_regression_per_example_loop(logreg_problem):
    """Tutorial 001's algorithm: a for loop over m examples, accumulate, then divide by m."""
    X, Y, w, b = logreg_problem
    m = X.shape[0]
    J, dw1, dw2, db = 0.0, 0.0, 0.0, 0.0
    for i in range(m):
        z = w[0] * X[i, 0] + w[1] * X[i, 1] + b
        a = 1.0 / (1.0 + math.exp(-z))
        y = Y[i, 0]
        J += -(y * math.log(a) + (1 - y) * math.log(1 - a))
        dz = a - y  # dL/da * da/dz = (a - y) / (a (1 - a)) * a (1 - a)
        dw1 += X[i, 0] * dz
        dw2 += X[i, 1] * dz
        db += dz
    J, dw1, dw2, db = J / m, dw1 / m, dw2 / m, db / m

    out = backprop(LOGREG, {"layers.0.W": w[None, :], "layers.0.b": np.array([b])}, X, Y)
    assert out["loss"] == pytest.approx(J, rel=1e-13)
    np.testing.assert_allclose(out["grads"]["layers.0.W"], [[dw1, dw2]], rtol=1e-12)
    np.testing.assert_allclose(out["grads"]["layers.0.b"], [db], rtol=1e-12)


def test_logistic_regression_vectorised(logreg_problem):
    """The vectorised form: dz = a - y, dw = X.T dz / m, db = sum(dz) / m."""
    X, Y, w, b = logreg_problem
    m = X.shape[0]
    A = logistic(X @ w + b)[:, None]
    dz = A - Y
    dw = X.T @ dz / m  # (2, 1): the column-vector layout of the tutorial
    db = dz.sum() / m

    out = backprop(LOGREG, {"layers.0.W": w[None, :], "layers.0.b": np.array([b])}, X, Y)
    np.testing.assert_allclose(out["grads"]["layers.0.W"], dw.T, rtol=1e-12)  # batch-major: W is (1, 2)
    np.testing.assert_allclose(out["grads"]["layers.0.b"], [db], rtol=1e-12)


@pytest.mark.parametrize("units", [1, 3])
def test_log_loss_delta_of_last_layer_is_a_minus_y_over_BD(units):
    """BP1 for sigmoid + binary cross-entropy: delta_L = (a - y) / (B * D); the a(1 - a) cancels."""
    rng = np.random.default_rng(2)
    B, n = 5, 4
    X = rng.normal(size=(B, n))
    Y = rng.integers(0, 2, size=(B, units)).astype(np.float64)
    W = rng.normal(size=(units, n)) * 0.5
    b = rng.normal(size=units) * 0.5
    spec = {**LOGREG, "input_dim": n, "layers": [{"units": units, "activation": "sigmoid"}]}

    out = backprop(spec, {"layers.0.W": W, "layers.0.b": b}, X, Y)
    A = logistic(X @ W.T + b)
    np.testing.assert_allclose(out["deltas"]["layers.0"], (A - Y) / (B * units), rtol=1e-12)


# --------------------------------------------------------------------------
# Tutorial 004: the quadratic cost, sigmoid, BP1-BP4
# --------------------------------------------------------------------------

QUADRATIC_NET = {
    "input_dim": 3,
    "layers": [{"units": 4, "activation": "sigmoid"}, {"units": 2, "activation": "sigmoid"}],
    "loss": "quadratic",
    "dtype": "float64",
}


@pytest.fixture
def quadratic_problem():
    rng = np.random.default_rng(4)
    B = 5
    params = {
        "layers.0.W": rng.normal(size=(4, 3)),
        "layers.0.b": rng.normal(size=4),
        "layers.1.W": rng.normal(size=(2, 4)),
        "layers.1.b": rng.normal(size=2),
    }
    x = rng.normal(size=(B, 3))
    y = rng.uniform(size=(B, 2))
    return params, x, y


def quadratic_cost_by_hand(params, x, y):
    """C = 1/(2B) sum_b ||a_b - y_b||^2 of a 2-layer sigmoid net, written out independently."""
    a0 = logistic(x @ params["layers.0.W"].T + params["layers.0.b"])
    a1 = logistic(a0 @ params["layers.1.W"].T + params["layers.1.b"])
    return float(np.sum((a1 - y) ** 2) / (2 * x.shape[0]))


def assert_close_to_differences(analytic, numeric, rtol=1e-7):
    """Elementwise relative error <= rtol, with an absolute floor of rtol x the tensor's largest entry."""
    scale = np.max(np.abs(numeric))
    assert scale > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=rtol * scale)


def test_quadratic_cost_bp1_to_bp4_agree_with_central_differences(quadratic_problem):
    params, x, y = quadratic_problem
    out = backprop(QUADRATIC_NET, params, x, y)
    assert out["loss"] == pytest.approx(quadratic_cost_by_hand(params, x, y), rel=1e-14)

    numeric = central_difference(lambda p: quadratic_cost_by_hand(p, x, y), params)
    for name in params:
        assert_close_to_differences(out["grads"][name], numeric[name])

    numeric_x = central_difference(lambda p: quadratic_cost_by_hand(params, p["x"], y), {"x": x})
    assert_close_to_differences(out["input_grad"], numeric_x["x"])


def test_quadratic_cost_equations_by_name(quadratic_problem):
    """BP1-BP4 written out (batch-major transposes of tutorial 004's column-vector forms)."""
    params, x, y = quadratic_problem
    B = x.shape[0]
    out = backprop(QUADRATIC_NET, params, x, y)
    W1 = params["layers.1.W"]
    z0 = x @ params["layers.0.W"].T + params["layers.0.b"]
    a0 = logistic(z0)
    z1 = a0 @ W1.T + params["layers.1.b"]
    a1 = logistic(z1)

    delta1 = (a1 - y) / B * a1 * (1 - a1)  # BP1: nabla_a C (.) sigma'(z^L), nabla_a C = (a - y)/B
    delta0 = (delta1 @ W1) * a0 * (1 - a0)  # BP2: ((W^{l+1})^T delta^{l+1}) (.) sigma'(z^l)
    np.testing.assert_allclose(out["deltas"]["layers.1"], delta1, rtol=1e-12)
    np.testing.assert_allclose(out["deltas"]["layers.0"], delta0, rtol=1e-12)
    np.testing.assert_allclose(out["grads"]["layers.1.b"], delta1.sum(axis=0), rtol=1e-12)  # BP3
    np.testing.assert_allclose(out["grads"]["layers.0.b"], delta0.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out["grads"]["layers.1.W"], delta1.T @ a0, rtol=1e-12)  # BP4
    np.testing.assert_allclose(out["grads"]["layers.0.W"], delta0.T @ x, rtol=1e-12)


def test_sigmoid_prime_is_sigma_times_one_minus_sigma():
    """sigma' = sigma (1 - sigma) (tutorial 002) against central differences of the reference sigmoid."""
    z = np.linspace(-5.0, 5.0, 41)
    h = 1e-6
    numeric = (sigmoid(z + h) - sigmoid(z - h)) / (2 * h)
    s = sigmoid(z)
    _, d_sigmoid = ACTIVATIONS["sigmoid"]
    np.testing.assert_allclose(s * (1 - s), numeric, rtol=1e-7)
    np.testing.assert_allclose(d_sigmoid(z), numeric, rtol=1e-7)


def test_sigmoid_has_the_minus_sign_tutorial_004_drops():
    """Tutorial 004 prints sigma(z) = 1/(1 + e^z); the sigmoid is 1/(1 + e^{-z}), increasing."""
    z = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-15)
    assert sigmoid(np.array([2.0]))[0] > 0.5
    assert np.all(np.diff(sigmoid(z)) > 0)


# --------------------------------------------------------------------------
# Tutorial 002: gradient descent
# --------------------------------------------------------------------------

def f(x):
    return x**4 - 3 * x**3 + 2


def df(x):
    return 4 * x**3 - 9 * x**2  # tutorial 002's derivative; zero at x = 0 and x = 9/4


def test_derivative_of_the_1d_example():
    assert df(2.25) == 0.0  # 4 * 729/64 - 9 * 81/16 = 729/16 - 729/16, exact in binary
    assert 12 * 2.25**2 - 18 * 2.25 > 0  # f'' > 0: a minimum
    for x in [-1.0, 0.6, 2.0, 6.0]:
        h = 1e-6
        assert (f(x + h) - f(x - h)) / (2 * h) == pytest.approx(df(x), rel=1e-7, abs=1e-7)


def test_gradient_descent_1d_converges_to_9_over_4():
    """Tutorial 002's loop: x from 6, step 0.01, stop when a step moves x by <= 1e-5."""
    x_old, x_new, gamma, precision = 0.0, 6.0, 0.01, 0.00001
    steps = 0
    while abs(x_new - x_old) > precision:
        x_old = x_new
        x_new += -gamma * df(x_old)
        steps += 1
        assert steps < 10_000, "gradient descent did not converge"
    # Near 9/4, f'' = 20.25, each step shrinks the distance by 1 - 0.01 * 20.25 = 0.7975;
    # a last step of <= 1e-5 leaves x within 1e-5 * 0.7975 / 0.2025 < 4e-5 of the minimum.
    assert x_new == pytest.approx(2.25, abs=4e-5)

    # The same loop through the reference's SGD step gives the same iterates, bit for bit.
    params = {"x": np.array(6.0)}
    for _ in range(steps):
        params = sgd_step(params, {"x": df(params["x"])}, gamma)
    assert params["x"].item() == x_new


REGRESSION_MLP = {
    "input_dim": 3,
    "layers": [{"units": 8, "activation": "tanh"}, {"units": 2, "activation": "identity"}],
    "loss": "mse",
}


def regression_problem(dtype):
    rng = np.random.default_rng(5)
    params = {
        "layers.0.W": rng.normal(size=(8, 3)) * 0.5,
        "layers.0.b": rng.normal(size=8) * 0.1,
        "layers.1.W": rng.normal(size=(2, 8)) * 0.5,
        "layers.1.b": rng.normal(size=2) * 0.1,
    }
    x = rng.normal(size=(16, 3))
    y = np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] ** 2], axis=1)
    return {k: v.astype(dtype) for k, v in params.items()}, x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sgd_step_lowers_the_loss_of_a_small_mlp(dtype):
    params, x, y = regression_problem(dtype)
    spec = {**REGRESSION_MLP, "dtype": dtype}
    losses = []
    for _ in range(20):
        out = backprop(spec, params, x, y)
        losses.append(out["loss"])
        params = sgd_step(params, out["grads"], 0.05)
    losses.append(backprop(spec, params, x, y)["loss"])
    assert all(after < before for before, after in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0]
    assert all(p.dtype == np.dtype(dtype) for p in params.values())


def test_sgd_step_is_w_minus_eta_grad_and_keeps_dtype():
    """w <- w - eta * dC/dw, each parameter in its own dtype, inputs left untouched."""
    params = {
        "a": np.array([1.0, -2.0, 0.5], dtype=np.float32),
        "b": np.array([[4.0]], dtype=np.float64),
    }
    grads = {
        "a": np.array([0.5, 1.0, -2.0], dtype=np.float32),
        "b": np.array([[-8.0]], dtype=np.float64),
    }
    new = sgd_step(params, grads, 0.25)
    np.testing.assert_array_equal(new["a"], [0.875, -2.25, 1.0])  # 1 - 0.125, -2 - 0.25, 0.5 + 0.5
    np.testing.assert_array_equal(new["b"], [[6.0]])  # 4 + 2
    assert new["a"].dtype == np.float32 and new["b"].dtype == np.float64
    np.testing.assert_array_equal(params["a"], [1.0, -2.0, 0.5])  # not updated in place
