"""Combining two tensors entry by entry: the residual add and the gating product.

add: out = x + y (a residual connection x + f(x), two branches merged); VJP dx = dout, dy = dout.
mul: out = x * y (a gate: an LSTM's o * tanh(c), attention's mask times values); VJP dx = dout y,
dy = dout x. x and y have the same shape (any). In a graph these are where fan-out returns: the
tensor a residual block adds back has two consumers, and its gradient is the sum of both parts.
torch: ``torch.add`` / ``torch.mul``; JAX: ``jax.numpy.add`` / ``jax.numpy.multiply``.
"""
from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["ADD", "MUL"]

FAMILIES = COMMON_FAMILIES + ("exact_zeros",)


def _draw(rng, family, dtype):
    shape = tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(1, 4))))
    x, y = (rng.standard_normal(shape) * rng.uniform(0.5, 3.0) for _ in range(2))
    if family == "exact_zeros":                          # zeros in both (mul's dx = dout y is then 0)
        x.flat[0], y.flat[-1] = 0.0, 0.0
    return Draw({"x": x.astype(dtype), "y": y.astype(dtype)})


def _shrink(draw):
    x = draw.inputs["x"]
    for axis in range(x.ndim):
        if x.shape[axis] > 1:
            keep = slice(0, x.shape[axis] - 1)
            index = (slice(None),) * axis + (keep,)
            yield Draw({k: v[index] for k, v in draw.inputs.items()}, draw.constants, draw.hyper)


ADD = Op(
    name="add",
    definition="out = x + y entry by entry, x and y of one shape (a residual connection)",
    inputs=("x", "y"), forward=lambda ns, a, c, h: a["x"] + a["y"],
    vjp=lambda ns, a, c, h, dout: {"x": dout, "y": dout}, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.add(a["x"], a["y"]),
    jax=lambda jax, a, c, h: jax.numpy.add(a["x"], a["y"]),
    shrink=_shrink,
    slips=(Slip("skip_dropped", "the skip connection's gradient is dropped: dy = 0",
                lambda ns, a, c, h, dout: {"y": dout * ns.const(0.0)}),))

MUL = Op(
    name="mul",
    definition="out = x * y entry by entry, x and y of one shape (a gate)",
    inputs=("x", "y"), forward=lambda ns, a, c, h: a["x"] * a["y"],
    vjp=lambda ns, a, c, h, dout: {"x": dout * a["y"], "y": dout * a["x"]}, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.mul(a["x"], a["y"]),
    jax=lambda jax, a, c, h: jax.numpy.multiply(a["x"], a["y"]),
    shrink=_shrink,
    slips=(Slip("swapped_factors", "the product's gradients swapped: dx = dout x, dy = dout y",
                lambda ns, a, c, h, dout: {"x": dout * a["x"], "y": dout * a["y"]}),))
