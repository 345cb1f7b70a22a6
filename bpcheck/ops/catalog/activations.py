"""Today's ten activations as ops: out = f(x) entry by entry, dx = dout f'(x).

The definitions are the dense path's, one place each: the certified scalar rules of
``oracles.arb_oracle`` (cancellation-free forms; relu'(0) = 0, leaky_relu'(0) = 0.01, elu'(0) = 1,
gelu the exact erf form, gelu_tanh the tanh form, softplus without a cut-over) and the rounding models
of ``bpcheck.core.rounding`` (which bound the textbook forms as well: 0.5 z (1 + erf(z / sqrt 2)),
1 - tanh^2, 1 / (1 + e^-z)). Kinks: relu and leaky_relu at exactly 0, where any derivative between the
one-sided ones is a valid subgradient (class ``kink``). Convention: torch's softplus reverts to the
identity for x > 20 (torch.nn.Softplus, threshold=20), a note with its source, not a bug.
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Convention, Draw, Op, Slip
from bpcheck.ops.running import activation_rule

__all__ = ["ACTIVATION_OPS"]

FAMILIES = COMMON_FAMILIES + ("exact_zeros", "saturated", "negative_tail", "exp_range", "tiny")
EXP_RANGE = {"float32": (80.0, 100.0), "float64": (700.0, 760.0)}   # around exp's overflow, both signs
KINKS = {"relu": (0.0, 1.0), "leaky_relu": (0.01, 1.0)}             # one-sided derivatives at 0


def _draw(rng, family, dtype):
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 7)))
    z = rng.standard_normal(shape) * 2.0
    if family == "exact_zeros":
        z.flat[rng.permutation(z.size)[: max(1, z.size // 2)]] = 0.0
    elif family == "saturated":
        z = rng.choice([-1, 1], size=shape) * rng.uniform(5.0, 40.0, size=shape)
    elif family == "negative_tail":
        z = -rng.uniform(4.0, 100.0, size=shape)
    elif family == "exp_range":
        lo, hi = EXP_RANGE[dtype]
        z = rng.choice([-1, 1], size=shape) * rng.uniform(lo, hi, size=shape)
    elif family == "tiny":
        z = rng.choice([-1, 1], size=shape) * 10.0 ** rng.uniform(-30, -10, size=shape)
    return Draw({"x": z.astype(dtype)})


def _record(name, torch_fn, jax_fn, conventions=()):
    def forward(ns, a, c, h):
        return ns.activation(name, a["x"])[0]

    def vjp(ns, a, c, h, dout):
        return {"x": dout * ns.activation(name, a["x"])[1]}

    def kinks(inputs, constants, hyper):
        lo, hi = KINKS[name]
        at = np.asarray(inputs["x"]) == 0
        return {"x": (at, lo, hi)}

    return Op(
        name=name, definition=f"{name} entry by entry, x of any shape (the dense path's definition)",
        inputs=("x",), forward=forward, vjp=vjp, draw=_draw, families=FAMILIES,
        torch=torch_fn, jax=jax_fn, kinks=kinks if name in KINKS else None, conventions=conventions,
        running=activation_rule(name, KINKS[name][1] if name in KINKS else None),
        slips=(Slip("forward_as_derivative", f"dx = dout * {name}(x): the output where f'(x) belongs",
                    lambda ns, a, c, h, dout: {"x": dout * ns.activation(name, a["x"])[0]}),)
        + ((Slip("derivative_omitted", f"dx = dout: {name}'s derivative left out (the gradient passed through)",
                 lambda ns, a, c, h, dout: {"x": dout * ns.const(1.0)}),) if name != "identity" else ()))


def _variant(arbiter):
    """(forward, vjp) of the activation the arbiter knows as ``arbiter``."""
    return (lambda ns, a, c, h: ns.activation(arbiter, a["x"])[0],
            lambda ns, a, c, h, dout: {"x": dout * ns.activation(arbiter, a["x"])[1]})


SOFTPLUS_TORCH = Convention(
    "softplus@torch", "softplus with PyTorch's linear cut-over (z for z > 20)", *_variant("softplus@torch"),
    framework="torch", arbiter="softplus@torch",
    source="torch.nn.functional.softplus(beta=1, threshold=20) "
           "(https://docs.pytorch.org/docs/stable/generated/torch.nn.Softplus.html)")
GELU_TANH_JAX = Convention(
    "gelu_tanh@jax", "gelu evaluated as its tanh approximation", *_variant("gelu_tanh"),
    framework="jax", arbiter="gelu_tanh",
    source="jax.nn.gelu defaults to approximate=True (https://docs.jax.dev/en/latest/_autosummary/jax.nn.gelu.html)")


_F = "torch.nn.functional"
ACTIVATION_OPS = (
    _record("identity", lambda torch, a, c, h: a["x"] * 1, lambda jax, a, c, h: a["x"] * 1),
    _record("relu", lambda torch, a, c, h: torch.relu(a["x"]), lambda jax, a, c, h: jax.nn.relu(a["x"])),
    _record("leaky_relu", lambda torch, a, c, h: torch.nn.functional.leaky_relu(a["x"], 0.01),
            lambda jax, a, c, h: jax.nn.leaky_relu(a["x"], 0.01)),
    _record("sigmoid", lambda torch, a, c, h: torch.sigmoid(a["x"]), lambda jax, a, c, h: jax.nn.sigmoid(a["x"])),
    _record("tanh", lambda torch, a, c, h: torch.tanh(a["x"]), lambda jax, a, c, h: jax.numpy.tanh(a["x"])),
    _record("softplus", lambda torch, a, c, h: torch.nn.functional.softplus(a["x"]),
            lambda jax, a, c, h: jax.nn.softplus(a["x"]),
            conventions=(SOFTPLUS_TORCH,)),
    _record("elu", lambda torch, a, c, h: torch.nn.functional.elu(a["x"]), lambda jax, a, c, h: jax.nn.elu(a["x"])),
    _record("gelu", lambda torch, a, c, h: torch.nn.functional.gelu(a["x"]),
            lambda jax, a, c, h: jax.nn.gelu(a["x"], approximate=False), conventions=(GELU_TANH_JAX,)),
    _record("gelu_tanh", lambda torch, a, c, h: torch.nn.functional.gelu(a["x"], approximate="tanh"),
            lambda jax, a, c, h: jax.nn.gelu(a["x"], approximate=True)),
    _record("silu", lambda torch, a, c, h: torch.nn.functional.silu(a["x"]), lambda jax, a, c, h: jax.nn.silu(a["x"])),
)
