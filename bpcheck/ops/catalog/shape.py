"""Moving entries without arithmetic: reshape and transpose (a graph's glue: splitting heads, tying weights).

reshape: out = x.reshape(shape) in row-major order (``hyper["shape"]``, one entry may be -1); VJP
dx = dout.reshape(x.shape). transpose: out = x.transpose(axes) (``hyper["axes"]``, a permutation;
reversed when absent); VJP dx = dout.transpose(argsort(axes)). No rounding: both are exact in every
dtype. torch: ``torch.reshape`` / ``torch.permute``; JAX: ``jax.numpy.reshape`` / ``jax.numpy.transpose``.
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip
from bpcheck.ops.running import TRANSPOSE as RUNNING

__all__ = ["RESHAPE", "TRANSPOSE"]


def _reshape_draw(rng, family, dtype):
    shape = tuple(int(d) for d in rng.integers(2, 5, size=int(rng.integers(2, 4))))
    x = rng.standard_normal(shape).astype(dtype)
    split = int(rng.integers(1, x.ndim))
    return Draw({"x": x}, {}, {"shape": [int(np.prod(x.shape[:split])), -1]})


def _axes(h, ndim):
    return tuple(h["axes"]) if h.get("axes") is not None else tuple(range(ndim))[::-1]


def _transpose_draw(rng, family, dtype):
    """x of 3 or 4 axes and a permutation that is not its own inverse (so undoing it matters)."""
    shape = tuple(int(d) for d in rng.integers(2, 5, size=int(rng.integers(3, 5))))
    axes = np.arange(len(shape))
    while np.array_equal(axes[axes], np.arange(len(shape))):
        axes = rng.permutation(len(shape))
    return Draw({"x": rng.standard_normal(shape).astype(dtype)}, {}, {"axes": [int(i) for i in axes]})


def _untranspose(ns, a, h, dout):
    return dout.transpose(*np.argsort(_axes(h, len(a["x"].shape))))


RESHAPE = Op(
    name="reshape",
    definition="out = x.reshape(shape), row-major, x of any shape",
    inputs=("x",), forward=lambda ns, a, c, h: a["x"].reshape(*h["shape"]),
    vjp=lambda ns, a, c, h, dout: {"x": dout.reshape(*a["x"].shape)}, draw=_reshape_draw, families=COMMON_FAMILIES,
    torch=lambda torch, a, c, h: torch.reshape(a["x"], tuple(h["shape"])),
    jax=lambda jax, a, c, h: jax.numpy.reshape(a["x"], tuple(h["shape"])),
    slips=(Slip("column_major", "reshaped back in column-major (Fortran) order",
                lambda ns, a, c, h, dout: {"x": _fortran(ns, dout, a["x"].shape)}),))

TRANSPOSE = Op(
    name="transpose",
    definition="out = x.transpose(axes), axes a permutation (reversed when not given)",
    inputs=("x",), forward=lambda ns, a, c, h: a["x"].transpose(*_axes(h, len(a["x"].shape))),
    vjp=lambda ns, a, c, h, dout: {"x": _untranspose(ns, a, h, dout)}, draw=_transpose_draw,
    families=COMMON_FAMILIES,
    torch=lambda torch, a, c, h: torch.permute(a["x"], _axes(h, a["x"].ndim)),
    jax=lambda jax, a, c, h: jax.numpy.transpose(a["x"], _axes(h, a["x"].ndim)),
    slips=(Slip("permuted_again", "the gradient permuted by axes again instead of by their inverse",
                lambda ns, a, c, h, dout: {"x": _again(ns, a, h, dout)}),),
    running=RUNNING)


def _fortran(ns, dout, shape):
    """dout laid into ``shape`` as ``reshape(shape, order="F")`` would (an index gather: exact in every reading)."""
    n = int(np.prod(shape))
    order = np.reshape(np.arange(n).reshape(dout.shape), shape, order="F").ravel()
    return dout.reshape(-1)[order].reshape(*shape)


def _again(ns, a, h, dout):
    """dout permuted by ``axes`` a second time (then laid into x's shape) instead of by their inverse."""
    return dout.transpose(*_axes(h, len(a["x"].shape))).reshape(*a["x"].shape)
