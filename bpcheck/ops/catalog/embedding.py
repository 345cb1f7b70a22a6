"""Word embedding: out[n, t] = W[x[n, t]] (CS231n's word_embedding_forward; torch.nn.functional.embedding).

VJP: dW[v] = sum of dout[n, t] over every (n, t) with x[n, t] = v -- repeated indices accumulate.
"""
import numpy as np

from bpcheck.ops.record import COMMON_FAMILIES, Draw, Op, Slip

__all__ = ["EMBEDDING"]

FAMILIES = COMMON_FAMILIES + ("repeated_indices", "all_same_index", "unused_rows")


def _draw(rng, family, dtype):
    n, t = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    v, d = int(rng.integers(2, 8)), int(rng.integers(1, 5))
    idx = rng.integers(0, v, size=(n, t))
    if family == "repeated_indices":
        idx.flat[-1] = idx.flat[0]
        if idx.size < 2:
            n, t, idx = 1, 2, np.array([[idx.flat[0]] * 2])
    if family == "all_same_index":                         # two or more lookups, one row
        if idx.size < 2:
            idx = np.repeat(idx, 2, axis=1)
        idx[:] = idx.flat[0]
    if family == "unused_rows":
        v = int(idx.max()) + 3
    return Draw({"W": rng.standard_normal((v, d)).astype(dtype)}, {"x": idx.astype(np.int64)})


def _forward(ns, a, c, h):
    return a["W"][c["x"]]


def _vjp(ns, a, c, h, dout):
    d = a["W"].shape[1]
    return {"W": ns.scatter_add(a["W"].shape, c["x"].ravel(), dout.reshape(-1, d))}


def _overwrite(ns, a, c, h, dout):
    """dW[idx] = dout: the last write to a repeated row wins."""
    d = a["W"].shape[1]
    out = np.zeros(a["W"].shape)
    out[c["x"].ravel()] = np.asarray(dout, dtype=np.float64).reshape(-1, d)
    return {"W": out}


def _shrink(draw):
    x = draw.constants["x"]
    for axis in (0, 1):
        for i in range(x.shape[axis] if x.shape[axis] > 1 else 0):
            yield Draw(draw.inputs, {"x": np.delete(x, i, axis)}, draw.hyper)


EMBEDDING = Op(
    name="embedding",
    definition="word embedding, indices x (N, T) into W (V, D): out (N, T, D) = W[x]",
    inputs=("W",), constants=("x",), forward=_forward, vjp=_vjp, draw=_draw, families=FAMILIES,
    torch=lambda torch, a, c, h: torch.nn.functional.embedding(c["x"], a["W"]),
    jax=lambda jax, a, c, h: jax.numpy.take(a["W"], c["x"], axis=0),
    cs231n=("word_embedding_forward", "word_embedding_backward",
            lambda fwd, a, c, h: fwd(c["x"], a["W"]), lambda r: {"W": r}),
    slips=(Slip("overwrite_repeats", "repeated indices overwritten instead of accumulated "
                "(dW[idx] = dout or dW[idx] += dout, where np.add.at is needed)", _overwrite),),
    shrink=_shrink)
