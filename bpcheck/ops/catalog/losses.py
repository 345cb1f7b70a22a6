"""Today's seven losses as ops: a scalar C(a, y) of predictions a (N, D) and targets y, and dC/da.

| op                    | C                                                | dC/da                    |
|-----------------------|--------------------------------------------------|--------------------------|
| sse                   | sum (a - y)^2                                    | 2 (a - y)                |
| half_sse              | 1/2 sum (a - y)^2                                | a - y                    |
| mse                   | mean over N D of (a - y)^2                       | 2 (a - y) / (N D)        |
| quadratic             | 1/(2N) sum ||a_n - y_n||^2                       | (a - y) / N              |
| binary_cross_entropy  | -mean[y log a + (1 - y) log(1 - a)], a in (0, 1) | (a - y) / (a (1 - a) N D) |
| bce_with_logits       | mean[max(z, 0) - z y + log(1 + e^-|z|)]          | (sigmoid(z) - y) / (N D) |

(softmax cross-entropy is ``softmax_loss`` and ``cross_entropy``.) The definitions are the dense path's
(``reference/losses.py`` is its readable copy); sigmoid(z) here is 1 / (1 + e^-z) for z >= 0 and
e^z / (1 + e^z) below, so no exp overflows. The op's output is the scalar loss; its cotangent is a
scalar drawn like any other (the network's loss has 1).
"""
import numpy as np

from bpcheck.ops.algebra import floats
from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip
from bpcheck.ops.running import loss_rule

__all__ = ["LOSS_OPS"]

FAMILIES = COMMON_FAMILIES + ("batch1", "exact_fit")
SATURATED = {"float32": (20.0, 88.0), "float64": (40.0, 700.0)}     # |z| past -log u, up to exp's range


def _draw_for(kind):
    def draw(rng, family, dtype):
        n = 1 if family == "batch1" else int(rng.integers(2, 6))
        shape = (n, int(rng.integers(1, 5)))
        if kind == "bce":
            a = rng.uniform(0.02, 0.98, size=shape)
            if family == "saturated":                       # every a within 1e-4 of 0 or 1 (held in the dtype)
                a = np.where(rng.random(shape) < 0.5, 10.0 ** -rng.uniform(4, 6, size=shape),
                             1 - 10.0 ** -rng.uniform(4, 6.5 if dtype == "float32" else 12, size=shape))
            y = rng.integers(0, 2, size=shape).astype(float)
        else:
            a = rng.standard_normal(shape) * 2.0
            if family == "saturated":                       # every |z| past -log u: sigma(z) rounds to 0 or 1
                a = rng.choice([-1, 1], size=shape) * rng.uniform(*SATURATED[dtype], size=shape)
            y = rng.integers(0, 2, size=shape).astype(float) if kind == "logits" else rng.standard_normal(shape)
        a = a.astype(dtype)
        if family == "exact_fit":                            # a residual of exactly 0 in half the entries
            half = max(1, y.size // 2)
            y.flat[:half] = a.flat[:half]                    # soft targets y = a for BCE: its gradient is 0 there
        return Draw({"a": a}, {"y": np.asarray(y, dtype=dtype)})
    return draw


def _squared(divisor):
    def forward(ns, a, c, h):
        r = a["a"] - ns.const(c["y"])
        return ns.sum(r * r) / ns.const(float(divisor(a["a"].shape)))

    def vjp(ns, a, c, h, dout):
        r = a["a"] - ns.const(c["y"])
        return {"a": r * (dout * ns.const(2.0)) / ns.const(float(divisor(a["a"].shape)))}

    return forward, vjp


def _bce_forward(ns, a, c, h):
    p, y = a["a"], ns.const(c["y"])
    n = float(np.prod(p.shape))
    return -ns.sum(y * ns.log(p) + (1 - y) * ns.log1p(-p)) / ns.const(n)


def _bce_vjp(ns, a, c, h, dout):
    p, y = a["a"], ns.const(c["y"])
    n = float(np.prod(p.shape))
    return {"a": (p - y) / (p * (1 - p)) * (dout / ns.const(n))}


def _sigmoid(ns, z):
    neg = floats(z) < 0
    e = ns.exp(ns.where(neg, z, -z))                         # e^-|z| <= 1
    return ns.where(neg, e / (1 + e), 1 / (1 + e))


def _logits_forward(ns, a, c, h):
    z, y = a["a"], ns.const(c["y"])
    neg = floats(z) < 0
    n = float(np.prod(z.shape))
    per = ns.where(neg, ns.const(0.0), z) - z * y + ns.log1p(ns.exp(ns.where(neg, z, -z)))
    # PyTorch's form (aten binary_cross_entropy_with_logits): (1 - y) z + m + log(e^-m + e^(-z - m)),
    # m = max(-z, 0): the log of a number near 1 where the loss is small, so an absolute error of u
    m = ns.where(neg, -z, ns.const(0.0))
    torch_form = (1 - y) * z + m + ns.log(ns.exp(-m) + ns.exp(-z - m))
    return ns.sum(ns.either(per, torch_form)) / ns.const(n)


def _logits_vjp(ns, a, c, h, dout):
    z, y = a["a"], ns.const(c["y"])
    return {"a": (_sigmoid(ns, z) - y) * (dout / ns.const(float(np.prod(z.shape))))}


def _record(name, kind, forward, vjp, torch_fn, jax_fn):
    families = {"squared": FAMILIES, "bce": FAMILIES + ("saturated",), "logits": COMMON_FAMILIES + ("batch1", "saturated")}[kind]
    return Op(name=name, definition=f"loss {name}: a scalar of predictions a (N, D) and targets y (N, D)",
              inputs=("a",), constants=("y",), forward=forward, vjp=vjp, draw=_draw_for(kind), families=families,
              torch=torch_fn, jax=jax_fn, running=loss_rule(name),
              slips=(Slip("sign_flipped", "dC/da with its sign flipped: (y - a) where (a - y) belongs",
                          lambda ns, a, c, h, dout: {"a": -vjp(ns, a, c, h, dout)["a"]}),))


_SSE = _squared(lambda s: 1)                      # C = sum r^2 / divisor
_HALF = _squared(lambda s: 2)
_MSE = _squared(lambda s: int(np.prod(s)))
_QUAD = _squared(lambda s: 2 * s[0])


def _t_sum(torch, a, c):
    """torch's sum of squared residuals: F.mse_loss with reduction "sum"."""
    return torch.nn.functional.mse_loss(a["a"], c["y"], reduction="sum")


def _j_sq(scale):
    return lambda jax, a, c, h: jax.numpy.sum((a["a"] - c["y"]) ** 2) * scale(a["a"].shape)


LOSS_OPS = (
    _record("sse", "squared", *_SSE, lambda torch, a, c, h: _t_sum(torch, a, c), _j_sq(lambda s: 1.0)),
    _record("half_sse", "squared", *_HALF, lambda torch, a, c, h: 0.5 * _t_sum(torch, a, c), _j_sq(lambda s: 0.5)),
    _record("mse", "squared", *_MSE,
            lambda torch, a, c, h: torch.nn.functional.mse_loss(a["a"], c["y"]),
            lambda jax, a, c, h: jax.numpy.mean((a["a"] - c["y"]) ** 2)),
    _record("quadratic", "squared", *_QUAD, lambda torch, a, c, h: _t_sum(torch, a, c) / (2 * a["a"].shape[0]),
            _j_sq(lambda s: 0.5 / s[0])),
    _record("binary_cross_entropy", "bce", _bce_forward, _bce_vjp,
            lambda torch, a, c, h: torch.nn.functional.binary_cross_entropy(a["a"], c["y"]),
            lambda jax, a, c, h: -jax.numpy.mean(c["y"] * jax.numpy.log(a["a"])
                                                 + (1 - c["y"]) * jax.numpy.log1p(-a["a"]))),
    _record("bce_with_logits", "logits", _logits_forward, _logits_vjp,
            lambda torch, a, c, h: torch.nn.functional.binary_cross_entropy_with_logits(a["a"], c["y"]),
            lambda jax, a, c, h: jax.numpy.mean(jax.nn.softplus(a["a"]) - a["a"] * c["y"])),
)
