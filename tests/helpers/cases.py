"""Hand-made cases (every value chosen so that the truth is known) and small candidates built on the reference."""
import numpy as np

from bpcheck.core.spec import Case, validate_case
from reference import activations as ref_activations
from reference.network import backprop as reference_backprop


def hand_case(dtype="float64", b0_first=0.0, activations=("relu", "tanh"), case_id="hand", loss="half_sse"):
    """Two layers; with b0_first = 0 the first unit's z is exactly 0 for example 0:
    0.5 * 1.0 + (-0.25) * 2.0 + 0 = 0 (every product and sum exact)."""
    spec = {"input_dim": 2, "layers": [{"units": 3, "activation": activations[0]},
                                       {"units": 2, "activation": activations[1]}],
            "loss": loss, "dtype": dtype}
    params = {"layers.0.W": np.array([[0.5, -0.25], [0.3, 0.7], [-0.6, 0.2]]),
              "layers.0.b": np.array([b0_first, 0.1, 0.05]),
              "layers.1.W": np.array([[0.8, -0.4, 0.3], [-0.2, 0.9, 0.45]]),
              "layers.1.b": np.array([0.15, -0.35])}
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    y = np.array([[0.3, -0.7], [1.1, 0.2]])
    case = Case(spec, {k: v.astype(dtype) for k, v in params.items()}, x.astype(dtype), y.astype(dtype),
                id=case_id)
    return validate_case(case)


def saturated_bce(dtype):
    """A sigmoid output whose z = 40: in float32 (and float64) sigmoid(40) rounds to 1.0."""
    case = hand_case(dtype, 0.25, ("tanh", "sigmoid"), loss="half_sse")
    case.spec["loss"] = "binary_cross_entropy"
    case.params["layers.1.b"][0] = 40.0
    case.y = np.asarray([[0.25, 0.75], [0.5, 0.125]], dtype)
    return validate_case(case)


def relu_prime_one(spec, params, x, y):
    """The reference with relu'(0) = 1 instead of the contract's 0."""
    relu, _ = ref_activations.ACTIVATIONS["relu"]
    saved = ref_activations.ACTIVATIONS["relu"]
    ref_activations.ACTIVATIONS["relu"] = (relu, lambda z: (z >= 0).astype(z.dtype))
    try:
        return reference_backprop(spec, params, x, y)
    finally:
        ref_activations.ACTIVATIONS["relu"] = saved
