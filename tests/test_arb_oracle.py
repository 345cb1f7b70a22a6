"""The certified arbiter (oracles/arb_oracle.py) checked against the mpmath arbiter
(oracles/numeric.py, which shares no code with it) on generated cases, and its balls
against direct 100-digit mpmath evaluations at extreme points. The conventions it
names (``@torch``, ``@one_at_zero``) are checked against their definitions, and a
meta-test shows the agreement check fails on a corrupted rule.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from mpmath import mp, mpf

from bpcheck.cases import strategies as bst
from oracles import arb_oracle, numeric
from oracles.arb_oracle import backprop

ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus",
               "elu", "gelu", "gelu_tanh", "silu"]
LOSSES = ["sse", "half_sse", "mse", "quadratic", "binary_cross_entropy",
          "bce_with_logits", "softmax_cross_entropy"]
KEYS = ["loss", "grads", "input_grad", "pre_activations", "activations", "deltas",
        "local_derivatives"]
SMALL = dict(max_depth=3, max_width=8)               # keeps the mpmath side quick


# ------------------------------------------------------------ the comparison

def _tensors(res):
    """{path: float64 array} for every tensor of a Result dict, the loss included."""
    out = {}
    for key in KEYS:
        if isinstance(res[key], dict):
            out.update({f"{key}/{name}": np.asarray(v) for name, v in res[key].items()})
        else:
            out[key] = np.asarray(res[key])
    return out


def disagreements(ours, theirs, rtol=1e-14, atol=1e-40):
    """Where two Result dicts differ: the same tensors, shapes and float64 dtype, and each
    entry within rtol * max(|value|, max |value| over its tensor) + atol * (the largest
    |value| of the case). The atol term admits numeric.py's stated residue: an entry that
    cancels to zero keeps ~1e-50 times the size of its terms."""
    missing = [k for k in KEYS + ["dtype"] if k not in ours]
    if missing:
        return [f"missing keys {missing}"]
    mine, ref = _tensors(ours), _tensors(theirs)
    if mine.keys() != ref.keys():
        return [f"tensors differ: {sorted(mine.keys() ^ ref.keys())}"]
    case_scale = max(float(np.abs(v).max(initial=0.0)) for v in ref.values())
    problems = []
    for path, b in ref.items():
        a = mine[path]
        if a.shape != b.shape or a.dtype != np.float64:
            problems.append(f"{path}: {a.shape} {a.dtype}, expected {b.shape} float64")
            continue
        allowed = rtol * np.maximum(np.abs(b), np.abs(b).max(initial=0.0)) + atol * case_scale
        excess = np.abs(a - b) - allowed
        if np.any(excess > 0):
            i = tuple(int(j) for j in np.unravel_index(np.argmax(excess), excess.shape))
            problems.append(f"{path}{list(i)}: {float(a[i])!r} vs {float(b[i])!r}")
    return problems


def one_layer(act, loss, z, y, dtype="float64"):
    """One input x = 1, one layer with W[j, 0] = z[j] and b = 0: so z_j exactly as given."""
    spec = {"input_dim": 1, "loss": loss, "dtype": dtype,
            "layers": [{"units": len(z), "activation": act}]}
    params = {"layers.0.W": np.array(z, dtype).reshape(-1, 1), "layers.0.b": np.zeros(len(z), dtype)}
    return spec, params, np.ones((1, 1), dtype), np.asarray(y)


def _radii(res):
    return [r for group in res["rel_radius"].values()
            for r in (group.values() if isinstance(group, dict) else [group])]


def _agree(case):
    assume(all(np.isfinite(a).all() for a in [*case.params.values(), case.x]))   # a valid case
    ours = backprop(case.spec, case.params, case.x, case.y)
    assert disagreements(ours, numeric.backprop(case.spec, case.params, case.x, case.y)) == []
    assert max(_radii(ours)) <= 2.0**-62 and ours["dtype"] == "float64"


# ------------------------------ (a) agreement with the mpmath arbiter (50 digits)

@pytest.mark.parametrize("act", ACTIVATIONS)
@given(data=st.data())
def test_agrees_with_numeric_per_activation(act, data):
    _agree(data.draw(bst.cases(bst.specs(activations=[act], **SMALL)), label="case"))


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_agrees_with_numeric_per_loss(loss, data):
    _agree(data.draw(bst.cases(bst.specs(losses=[loss], **SMALL)), label="case"))


def test_true_zero_by_symmetry_is_exact_here():
    """Two identical output units: softmax gives them equal weight, so every gradient below
    the last layer is exactly 0. numeric.py keeps a ~1e-51 rounding residue there (its
    1/10 is rounded); the balls certify 0 (with more bits: no relative accuracy exists)."""
    spec = {"input_dim": 2, "loss": "softmax_cross_entropy", "dtype": "float64",
            "layers": [{"units": 2, "activation": "tanh"}, {"units": 10, "activation": "identity"}]}
    params = {"layers.0.W": np.array([[0.5, -1.25], [0.75, 0.3]]), "layers.0.b": np.array([0.1, -0.2]),
              "layers.1.W": np.full((10, 2), 0.375), "layers.1.b": np.zeros(10)}
    case = spec, params, np.array([[1.0, 2.0], [-0.5, 0.25]]), np.array([0, 3])
    ours, ref = backprop(*case), numeric.backprop(*case)
    assert np.all(ours["grads"]["layers.0.W"] == 0) and np.all(ours["input_grad"] == 0)
    assert max(_radii(ours)) <= 2.0**-62 and ours["bits"] > 128
    assert np.abs(ref["grads"]["layers.0.W"]).max() < 1e-45
    assert disagreements(ours, ref) == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_agrees_with_numeric_at_extremes(act, dtype):
    """Pre-activations at +-0.3, +-8, +-40 and near the float64 exp overflow (+-745),
    or float32's (+-100), through a second layer and mse."""
    big = 745.0 if dtype == "float64" else 100.0
    zs = [0.3, -0.3, 8.0, -8.0, 40.0, -40.0, big, -big]
    spec, params, x, _ = one_layer(act, "mse", zs, None, dtype=dtype)
    spec["layers"].append({"units": 2, "activation": "identity"})
    params["layers.1.W"] = np.linspace(-1, 1, 16).reshape(2, 8).astype(dtype)
    params["layers.1.b"] = np.array([0.5, -0.25], dtype)
    case = spec, params, x, np.array([[0.1, -0.2]], dtype)
    assert disagreements(backprop(*case), numeric.backprop(*case)) == []


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "bce_with_logits"])
def test_agrees_with_numeric_saturated_bce(loss):
    """Outputs within 1e-8, 6e-16 and e^-745 of 0 or 1 (numeric.py redoes this last
    case at 800 digits: its 1 - a cancels)."""
    zs = [18.42, -18.42, 35.0, -35.0, 745.0, -745.0]
    act = "sigmoid" if loss == "binary_cross_entropy" else "identity"
    case = one_layer(act, loss, zs, [[1.0, 0.0, 1.0, 0.0, 0.75, 0.25]])
    ours = backprop(*case)
    assert disagreements(ours, numeric.backprop(*case)) == [] and ours["bits"] == 128


# ----------------------- (b) the balls contain mpmath's 100-digit values

def _sig(z):
    return 1 / (1 + mp.exp(-z))


# f(z), f'(z) with mpmath's own functions (accurate at any z at the working precision)
MP = {
    "tanh": lambda z: (mp.tanh(z), mp.sech(z) ** 2),
    "sigmoid": lambda z: (_sig(z), _sig(z) * _sig(-z)),
    "softplus": lambda z: (mp.log1p(mp.exp(z)), _sig(z)),
    "silu": lambda z: (z * _sig(z), _sig(z) + z * _sig(z) * _sig(-z)),
    "elu": lambda z: (z, mpf(1)) if z > 0 else (mp.expm1(z), mp.exp(z)),
    "gelu": lambda z: (z * mp.ncdf(z), mp.ncdf(z) + z * mp.npdf(z)),
    "gelu_tanh": lambda z: _gelu_tanh(z),
    "relu": lambda z: (max(z, 0), mpf(1) if z > 0 else mpf(0)),
}


def _gelu_tanh(z):
    c, k = mp.sqrt(2 / mp.pi), mpf(44715) / 10**6
    u = c * (z + k * z**3)                           # 0.5 (1 + tanh u) = sigma(2u), exactly
    return z * _sig(2 * u), _sig(2 * u) + z * mp.sech(u) ** 2 * c * (1 + 3 * k * z * z) / 2


def _two_layer(act, z0):
    """x = 1 -> z0 = W0 (exact) -> act -> z1 = 0.75 a0 - 0.5 (identity) -> half_sse, y = 0.375."""
    spec = {"input_dim": 1, "loss": "half_sse", "dtype": "float64",
            "layers": [{"units": 1, "activation": act}, {"units": 1, "activation": "identity"}]}
    params = {"layers.0.W": np.array([[z0]]), "layers.0.b": np.array([0.0]),
              "layers.1.W": np.array([[0.75]]), "layers.1.b": np.array([-0.5])}
    case = spec, params, np.array([[1.0]]), np.array([[0.375]])
    z0 = mpf(z0)
    a0, f0 = MP[act](z0)
    z1 = mpf(0.75) * a0 - mpf(0.5)
    d1 = z1 - mpf(0.375)
    d0 = d1 * mpf(0.75) * f0
    expect = {("loss",): d1 * d1 / 2, ("grads", "layers.0.W"): d0, ("grads", "layers.0.b"): d0,
              ("grads", "layers.1.W"): d1 * a0, ("grads", "layers.1.b"): d1, ("input_grad",): d0 * z0,
              ("pre_activations", "layers.0"): z0, ("activations", "layers.0"): a0,
              ("local_derivatives", "layers.0"): f0, ("deltas", "layers.0"): d0,
              ("pre_activations", "layers.1"): z1, ("activations", "layers.1"): z1,
              ("local_derivatives", "layers.1"): mpf(1), ("deltas", "layers.1"): d1}
    return case, expect


def _to_mpf(ball_part):
    man, exp = ball_part.man_exp()
    return mpf((int(man), int(exp)))


def assert_inside(balls, expect):
    """Every expected value (100-digit mpmath numbers: one, or a list for the whole tensor,
    row-major) lies in its ball, up to 1e-95 of itself (mpmath's own accuracy):
    |mid - v| <= rad + 1e-95 |v|."""
    assert set(expect) <= set(balls)
    with mp.workprec(8192):                          # exact conversions of mid and rad
        for path, values in expect.items():
            values = values if isinstance(values, list) else [values]
            assert len(values) == len(balls[path][1])
            for v, ball in zip(values, balls[path][1]):
                mid, rad = _to_mpf(ball.mid()), _to_mpf(ball.rad())
                assert abs(mid - v) <= rad + abs(v) * mpf(10) ** -95, f"{path}: {v} not in {ball}"


@pytest.mark.parametrize("z0", [30.0, -30.0, 700.0, -700.0])
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus", "silu", "elu", "gelu", "gelu_tanh"])
def test_balls_contain_mpmath_at_extremes(act, z0):
    with mp.workdps(100):
        case, expect = _two_layer(act, z0)
        balls, bits = arb_oracle._balls(*case)
        assert_inside(balls, expect)
    assert bits == 128                               # saturation costs no extra precision


def test_balls_exact_zero_at_relu_kink():
    """z = 1.5 * 2 - 3 = 0 exactly: relu gives a = 0 and relu'(0) = 0, all exact balls."""
    spec, params, x, y = one_layer("relu", "half_sse", [2.0], [[0.25]])
    params["layers.0.b"] = np.array([-3.0])
    balls, _ = arb_oracle._balls(spec, params, np.array([[1.5]]), y)
    for key in ("pre_activations", "activations", "local_derivatives", "deltas"):
        (_, (ball,)) = balls[(key, "layers.0")]
        assert ball.is_exact() and ball == 0
    with mp.workdps(100):
        assert_inside(balls, {("loss",): mpf(0.25) ** 2 / 2, ("grads", "layers.0.W"): mpf(0)})


@pytest.mark.parametrize("z, y", [(35.0, 1.0), (35.0, 0.3), (18.420680743952367, 1.0), (-35.0, 0.0)])
def test_balls_contain_mpmath_bce_saturated(z, y):
    """sigmoid(35) = 1 - 6e-16 and sigmoid(18.42...) = 1 - 1e-8: 1 - a is sigma(-z), exact."""
    with mp.workdps(100):
        case = one_layer("sigmoid", "binary_cross_entropy", [z], [[y]])
        balls, bits = arb_oracle._balls(*case)
        z, y = mpf(z), mpf(y)
        loss = -(y * mp.log(_sig(z)) + (1 - y) * mp.log(_sig(-z)))
        delta = _sig(z) - y
        assert_inside(balls, {("loss",): loss, ("deltas", "layers.0"): delta,
                              ("grads", "layers.0.W"): delta, ("input_grad",): delta * z})
    assert bits == 128


def test_balls_contain_mpmath_confident_softmax():
    """Logits (80, 0), class 0: loss = log1p(e^-80) ~ 1.8e-35, no 1 - p cancellation."""
    with mp.workdps(100):
        spec = {"input_dim": 2, "loss": "softmax_cross_entropy", "dtype": "float64",
                "layers": [{"units": 2, "activation": "identity"}]}
        params = {"layers.0.W": np.array([[80.0, 0.0], [0.0, 1.0]]), "layers.0.b": np.zeros(2)}
        balls, _ = arb_oracle._balls(spec, params, np.array([[1.0, 0.0]]), np.array([0]))
        q = mp.exp(-80) / (1 + mp.exp(-80))          # softmax_1 = 1 - softmax_0
        assert_inside(balls, {("loss",): mp.log1p(mp.exp(-80)), ("grads", "layers.0.b"): [-q, q],
                              ("grads", "layers.0.W"): [-q, 0, q, 0], ("input_grad",): [-80 * q, q]})
    res = backprop(spec, params, np.array([[1.0, 0.0]]), np.array([0]))
    assert res["loss"] == pytest.approx(float(mp.log1p(mp.exp(-80))), rel=1e-15)
    assert res["grads"]["layers.0.b"][1] == pytest.approx(float(mp.exp(-80) / (1 + mp.exp(-80))), rel=1e-15)


# ------------------------------------------- (c) the conventions named in the spec

def test_softplus_torch_is_linear_above_20():
    """torch's softplus (beta=1, threshold=20): z and derivative 1 where z > 20 only."""
    zs = [25.0, 20.5, 20.0, 19.0, -3.0]
    case = one_layer("softplus@torch", "sse", zs, [[0.0] * 5])
    torch_like, plain = backprop(*case), backprop(*one_layer("softplus", "sse", zs, [[0.0] * 5]))
    a, f = torch_like["activations"]["layers.0"][0], torch_like["local_derivatives"]["layers.0"][0]
    assert a[0] == 25.0 and a[1] == 20.5 and f[0] == f[1] == 1.0
    assert plain["activations"]["layers.0"][0][0] > 25.0     # log1p(e^25) = 25 + 1.4e-11
    np.testing.assert_array_equal(a[2:], plain["activations"]["layers.0"][0][2:])   # z <= 20
    np.testing.assert_array_equal(f[2:], plain["local_derivatives"]["layers.0"][0][2:])


def test_bce_torch_floor_and_clamp():
    """torch's BCE: dLoss/da = (a - y) / max(a (1 - a), EPSILON) / n with EPSILON the
    C++ float 1e-12 (9.99999996e-13: a relative 4e-9 from 1e-12, visible below), and
    each log clamped at -100; both decided on the exact values."""
    eps = mpf(float(np.float32(1e-12)))
    with mp.workdps(100):
        # z = 40: a (1 - a) = 4.2e-18 < EPSILON, so the floor acts; log(1 - a) = -40 > -100
        z, y = mpf(40), mpf(0.25)
        res = backprop(*one_layer("sigmoid", "binary_cross_entropy@torch", [40.0], [[0.25]]))
        p, q = _sig(z), _sig(-z)
        assert res["deltas"]["layers.0"][0, 0] == pytest.approx(float((p - y) / eps * p * q), rel=1e-15)
        assert res["loss"] == pytest.approx(float(-(y * mp.log(p) + (1 - y) * mp.log(q))), rel=1e-15)
        plain = backprop(*one_layer("sigmoid", "binary_cross_entropy", [40.0], [[0.25]]))
        assert plain["deltas"]["layers.0"][0, 0] == pytest.approx(float(p - y), rel=1e-15)
        # z = 150: log(1 - a) = -150 is clamped to -100
        res = backprop(*one_layer("sigmoid", "binary_cross_entropy@torch", [150.0], [[0.25]]))
        assert res["loss"] == pytest.approx(float(-(y * mp.log(_sig(mpf(150))) + (1 - y) * -100)), rel=1e-15)
        # z = 2: a (1 - a) = 0.105 > EPSILON: the same as the unclamped loss
        a, b = (backprop(*one_layer("sigmoid", name, [2.0], [[0.25]]))
                for name in ("binary_cross_entropy@torch", "binary_cross_entropy"))
        assert disagreements(a, b, rtol=4e-16, atol=0) == []


@pytest.mark.parametrize("act, at_zero", [("relu", 0.0), ("relu@one_at_zero", 1.0),
                                          ("leaky_relu", 0.01), ("leaky_relu@one_at_zero", 1.0)])
def test_kink_conventions_at_an_exact_zero(act, at_zero):
    """z = 1.5 * 2 - 3 = 0 exactly; away from 0 the variants equal their base."""
    spec, params, _, y = one_layer(act, "sse", [2.0, 2.0], [[0.5, 0.5]])
    params["layers.0.b"] = np.array([-3.0, -1.0])    # z = (0, 2)
    res = backprop(spec, params, np.array([[1.5]]), y)
    f = res["local_derivatives"]["layers.0"][0]
    assert f[0] == at_zero and f[1] == 1.0
    assert res["activations"]["layers.0"][0, 0] == 0.0
    assert res["rel_radius"]["pre_activations"]["layers.0"] == 0.0     # exact balls
    assert res["bits"] == 128


def test_undecided_kink_takes_more_bits():
    """z = 2^100 + 2^-100 - 2^100 = 2^-100 exactly, but at 128 bits its ball straddles 0:
    relu's branch waits for enough bits to decide, then takes z > 0."""
    spec = {"input_dim": 2, "loss": "sse", "dtype": "float64", "layers": [{"units": 1, "activation": "relu"}]}
    for sign in (1.0, -1.0):
        params = {"layers.0.W": np.array([[2.0**100, sign * 2.0**-100]]), "layers.0.b": np.array([-2.0**100])}
        case = spec, params, np.ones((1, 2)), np.array([[0.0]])
        res = backprop(*case)
        assert res["bits"] > 128
        assert res["pre_activations"]["layers.0"][0, 0] == sign * 2.0**-100
        assert res["local_derivatives"]["layers.0"][0, 0] == (1.0 if sign > 0 else 0.0)
        with pytest.raises(ArithmeticError, match="128 bits"):
            backprop(*case, max_bits=128)


def test_unknown_names_raise():
    case = one_layer("tanh", "mse", [0.5], [[0.0]])
    with pytest.raises(ValueError, match="swish"):
        backprop({**case[0], "layers": [{"units": 1, "activation": "swish"}]}, *case[1:])
    with pytest.raises(ValueError, match="hinge"):
        backprop({**case[0], "loss": "hinge"}, *case[1:])
    with pytest.raises(ValueError, match="finite"):
        backprop(case[0], {**case[1], "layers.0.b": np.array([np.inf])}, *case[2:])


# ------------------------------------------------ (d) the check can fail (meta)

def _tanh_case():
    rng = np.random.default_rng(7)
    spec = {"input_dim": 3, "loss": "mse", "dtype": "float64",
            "layers": [{"units": 4, "activation": "tanh"}, {"units": 2, "activation": "identity"}]}
    params = {"layers.0.W": rng.normal(size=(4, 3)), "layers.0.b": rng.normal(size=4),
              "layers.1.W": rng.normal(size=(2, 4)), "layers.1.b": rng.normal(size=2)}
    return spec, params, rng.normal(size=(5, 3)), rng.normal(size=(5, 2))


def test_meta_agreement_passes_unbroken():
    case = _tanh_case()
    assert disagreements(backprop(*case), numeric.backprop(*case)) == []


def test_meta_corrupted_rule_is_detected(monkeypatch):
    """tanh' = 4e / (1 + e)^2 with the 4 dropped: the cross-check must report it."""
    def broken(z):
        t, d = arb_oracle._tanh(z)
        return t, d / 4
    monkeypatch.setitem(arb_oracle.ACTIVATIONS, "tanh", broken)
    case = _tanh_case()
    problems = disagreements(backprop(*case), numeric.backprop(*case))
    assert any(p.startswith("local_derivatives/layers.0") for p in problems)
    assert any(p.startswith("grads/layers.0.W") for p in problems)


def test_meta_perturbed_result_is_detected():
    case = _tanh_case()
    ours, ref = backprop(*case), numeric.backprop(*case)
    ours["grads"]["layers.1.W"][1, 2] *= 1 + 1e-13
    assert disagreements(ours, ref) == [f"grads/layers.1.W[1, 2]: {float(ours['grads']['layers.1.W'][1, 2])!r} "
                                        f"vs {float(ref['grads']['layers.1.W'][1, 2])!r}"]


# ---------------------------------------------------- (e) the Result contract

def test_result_contract_and_float32_exactness():
    """Same keys as numeric.py plus rel_radius (same structure, floats) and bits; float32
    inputs give exactly the float64-cast case's answer."""
    spec, params, x, y = _tanh_case()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    res = backprop({**spec, "dtype": "float32"}, p32, x.astype(np.float32), y.astype(np.float32))
    ref = numeric.backprop(spec, params, x, y)
    assert set(res) == set(ref) | {"rel_radius", "bits"}
    for key in KEYS[1:]:
        value = res[key]
        if isinstance(value, dict):
            assert list(value) == list(ref[key]) and list(res["rel_radius"][key]) == list(value)
            assert all(v.dtype == np.float64 for v in value.values())
    assert isinstance(res["loss"], float) and isinstance(res["rel_radius"]["loss"], float)
    as64 = backprop(spec, {k: v.astype(np.float64) for k, v in p32.items()},
                    x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64))
    assert disagreements(res, as64, rtol=0, atol=0) == []
