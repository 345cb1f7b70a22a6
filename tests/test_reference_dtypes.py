"""The reference keeps ``spec["dtype"]`` end to end, and imports nothing it must not.

NumPy 2 (NEP 50) promotes by type, not by value: a float32 array combined with
a ``np.float64`` scalar (or a 0-d float64 array) becomes float64, while a Python
float is "weak" and keeps float32. One stray ``np.float64`` constant in a
forward or backward formula silently turns a float32 candidate into a float64
one — and a float32 check into a float64 check. These tests first show that
the trap is real, then that the reference does not fall into it.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference.activations import ACTIVATIONS
from reference.losses import LOSSES
from reference.network import backprop
from reference.optim import sgd_step

REPO = Path(__file__).resolve().parents[1]
DTYPES = ["float32", "float64"]


def last_activation(loss, hidden):
    """The output activation a loss needs (README, "Conventions"); any activation works for the rest."""
    return {
        "binary_cross_entropy": "sigmoid",
        "bce_with_logits": "identity",
        "softmax_cross_entropy": "identity",
    }.get(loss, hidden)


def make_targets(loss, rng, batch, units):
    if loss == "softmax_cross_entropy":
        return rng.integers(0, units, size=batch)  # integer classes, shape (batch,)
    if loss in ("binary_cross_entropy", "bce_with_logits"):
        return rng.uniform(0.05, 0.95, size=(batch, units))
    return rng.normal(size=(batch, units))


def make_case(activation, loss, dtype, seed=0):
    """A 3-layer net: two hidden layers of ``activation`` (so BP2 runs through it), then the output."""
    rng = np.random.default_rng(seed)
    batch, sizes = 4, [3, 5, 4, 3]
    spec = {
        "input_dim": sizes[0],
        "layers": [
            {"units": sizes[1], "activation": activation},
            {"units": sizes[2], "activation": activation},
            {"units": sizes[3], "activation": last_activation(loss, activation)},
        ],
        "loss": loss,
        "dtype": dtype,
    }
    params = {}
    for i, (fan_in, units) in enumerate(zip(sizes, sizes[1:])):
        # modest weights keep the sigmoid of binary_cross_entropy away from saturation,
        # where float32 rounds a to 1 and the loss to inf (not what this file is about)
        params[f"layers.{i}.W"] = (rng.normal(size=(units, fan_in)) / np.sqrt(fan_in)).astype(dtype)
        params[f"layers.{i}.b"] = (0.1 * rng.normal(size=units)).astype(dtype)
    x = rng.normal(size=(batch, sizes[0])).astype(dtype)
    y = make_targets(loss, rng, batch, sizes[-1])
    if loss != "softmax_cross_entropy":
        y = y.astype(dtype)
    return spec, params, x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_backprop_keeps_dtype_end_to_end(activation, loss, dtype):
    spec, params, x, y = make_case(activation, loss, dtype)
    out = backprop(spec, params, x, y)

    assert type(out["loss"]) is float
    assert np.isfinite(out["loss"])

    want = np.dtype(dtype)
    arrays = {f"grads[{k}]": v for k, v in out["grads"].items()}
    arrays["input_grad"] = out["input_grad"]
    for kind in ("pre_activations", "activations", "deltas"):
        arrays.update({f"{kind}[{k}]": v for k, v in out[kind].items()})

    assert set(out["grads"]) == set(params)
    for kind in ("pre_activations", "activations", "deltas"):
        assert set(out[kind]) == {"layers.0", "layers.1", "layers.2"}
    wrong = {name: str(a.dtype) for name, a in arrays.items() if a.dtype != want}
    assert not wrong, f"not {dtype}: {wrong}"
    for name, a in arrays.items():
        assert isinstance(a, np.ndarray), name
        assert np.all(np.isfinite(a)), name
    for k, p in params.items():
        assert out["grads"][k].shape == p.shape
    assert out["input_grad"].shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_float64_inputs_are_computed_in_the_spec_dtype(dtype):
    """Params, x and y handed over in float64 are still computed in ``spec["dtype"]``."""
    spec, params, x, y = make_case("tanh", "mse", dtype)
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    out = backprop(spec, params64, x.astype(np.float64), y.astype(np.float64))
    assert all(g.dtype == np.dtype(dtype) for g in out["grads"].values())
    assert out["input_grad"].dtype == np.dtype(dtype)


# --------------------------------------------------------------------------
# The NumPy 2 promotion trap, and the reference avoiding it
# --------------------------------------------------------------------------

def test_the_promotion_trap_is_real():
    a = np.ones(3, dtype=np.float32)
    # Strong float64 operands promote a float32 array ...
    assert (a * np.float64(0.5)).dtype == np.float64
    assert (a / np.float64(2.0)).dtype == np.float64
    assert (a + np.array(1.0)).dtype == np.float64  # a 0-d float64 array too (NumPy 1 kept float32)
    assert (a - np.sum(np.ones(2))).dtype == np.float64  # e.g. a reduction done in float64
    # ... weak Python scalars do not.
    assert (a * 0.5).dtype == np.float32
    assert (a / 2).dtype == np.float32
    assert (1 - a).dtype == np.float32


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_applied_to_float32_return_float32(name):
    f, df = ACTIVATIONS[name]
    z = np.array([[-3.0, -0.5, 0.0], [0.25, 1.0, 4.0]], dtype=np.float32)
    assert f(z).dtype == np.float32, f"{name}: {f(z).dtype}"
    assert df(z).dtype == np.float32, f"{name}': {df(z).dtype}"
    assert f(z).shape == z.shape and df(z).shape == z.shape
    # the same call in float64 stays float64 (no downcast either)
    assert f(z.astype(np.float64)).dtype == np.float64
    assert df(z.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_applied_directly_keep_dtype(name, dtype):
    rng = np.random.default_rng(3)
    a = rng.uniform(0.1, 0.9, size=(4, 3)).astype(dtype)  # inside (0, 1): valid for every loss
    y = make_targets(name, rng, 4, 3)
    if name != "softmax_cross_entropy":
        y = y.astype(dtype)
    loss, grad_a = LOSSES[name](a, y)
    assert np.result_type(loss) == np.dtype(dtype), f"{name} loss: {np.result_type(loss)}"
    assert grad_a.dtype == np.dtype(dtype), f"{name} grad: {grad_a.dtype}"
    assert grad_a.shape == a.shape


def test_sgd_step_with_a_numpy_float64_learning_rate_keeps_float32():
    """The trap in optimiser form: ``p - np.float64(lr) * g`` would promote; sgd_step does not."""
    p = {"w": np.array([1.0, 2.0], dtype=np.float32)}
    g = {"w": np.array([0.5, -0.5], dtype=np.float32)}
    lr = np.float64(0.1)
    assert (p["w"] - lr * g["w"]).dtype == np.float64  # the naive update falls into the trap
    new = sgd_step(p, g, lr)
    assert new["w"].dtype == np.float32
    np.testing.assert_allclose(new["w"], [0.95, 2.05], rtol=1e-6)


# --------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------

def test_reference_imports_neither_torch_jax_bpcheck_nor_oracles():
    code = (
        "import reference, reference.network, reference.activations, reference.losses, "
        "reference.optim, sys; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'jax', 'bpcheck', 'oracles'}); "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
