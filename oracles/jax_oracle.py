"""JAX grad oracle: the contract's network built from jax.nn (each activation its op record's JAX
binding) and optax losses, run for many cases at once through a few compiled functions.

``backprop(spec, params, x, y)`` returns one Result; ``backprop_many(items)``
takes a list of ``(spec, params, x, y)`` of any depths, widths, batches,
activations, losses and dtypes and returns their Results in the same order.
float64 is enabled on import (``jax_enable_x64``), before any array is made.

How: every case is padded to a shape *bucket* (depth, width, batch), cases of
one bucket and dtype are stacked in chunks (``CHUNK`` cases in the default
bucket) and run through ``jit(vmap(value_and_grad(network)))``, compiled once
per (bucket, dtype, chunk size). The layers are a ``lax.scan`` over stacked
weights, each layer's activation and the loss are picked at run time from
integer codes, so one compiled function serves every architecture and loss
that fits the bucket.

Padding, and why each piece is an exact no-op:
- Width: input_dim and every layer's units pad to one width (a power of two,
  at least ``MIN_WIDTH``), with zero weights and biases. Each layer knows its
  real unit count and its padded units' activations are set to exactly 0
  (``where``), so they add exact zeros to every real z of the next layer, and
  the ``where`` gives them exactly zero delta whatever reaches them. Real
  entries therefore add only exact zeros (0 x 0) in forward and backward
  sums, so only the summation order can change (also when an inf is
  involved: no inf x 0 = NaN ever reaches a real entry).
- Batch: rows pad to ``MIN_BATCH``, or past it to ``WIDE_BATCH`` (or the next
  power of two): wide batches share one bucket. Padded rows have x = 0.
  Padded rows are masked out of the loss, so their deltas are exactly zero
  and they add exact zeros to every weight and bias gradient.
- Output entries: the loss reads only the real rows x real units of the last
  layer; every other entry is replaced by a safe constant (0.5) before the
  loss built-in sees it and is zeroed after, so it contributes exactly 0 to
  the loss and receives exactly 0 gradient. Means divide by the real counts.
- Softmax classes: padded classes are excluded by optax's own ``where``
  argument (jax.nn.logsumexp(where=...)), which gives them exactly zero
  probability and zero gradient.
- Depth: depth pads to a multiple of ``DEPTH_STEP`` by *leading* pass-through
  layers (zero units: ``a_out = where(pass, a_in, ...)``), a copy forward and
  backward. Leading, so that the loss reads the real last layer directly;
  ``where`` rather than an identity weight matrix, so the input gradient is
  copied exactly, even where it is inf (g @ I would turn inf into NaN).
- Activation and loss selection: every candidate activation f_k is applied to
  ``where(code == k, z, 0)`` and the result picked with ``select_n``, so an
  unselected activation sees only 0 and its gradient cannot put NaN/inf into
  the real one (the ``where`` blocks its cotangent; e.g. gelu_tanh's float32
  gradient at |z| = 1e30 is NaN). Losses likewise see 0.5 unless selected. (So
  the losses are written here, as sums over the real entries divided by the real
  counts, rather than taken from the loss records' bindings, which reduce over
  every entry they are given.)
- Chunks: the number of cases pads to ``CHUNK`` with filler cases (x = 0,
  pass-through layers into one zero unit) whose results are dropped, so the
  case dimension never recompiles (one chunk size per bucket: fewer cases in
  bigger buckets, see ``CHUNK_VOLUME``), a lone case too: its numbers do not
  depend on which other cases share the call.
The values are what JAX computes for the unpadded network: the same
elementwise ops on the same values, up to the order of floating-point sums
(which XLA may also fuse differently: a last-bit difference in an
activation is possible).

Conventions normalised to the contract (everything else is JAX's default):
- gelu is jax.nn.gelu(approximate=False); jax's *default* is the tanh form,
  which is our gelu_tanh (jax.nn.gelu(approximate=True)).
- leaky_relu: jax.nn.leaky_relu uses ``where(z >= 0, ...)`` so its derivative
  at 0 is 1; the contract says 0.01, so this module uses ``where(z > 0, ...)``
  with the same slope 0.01.
- relu'(0) = 0 in jax already (custom JVP).
- binary_cross_entropy on probabilities has no optax built-in; it is written
  against the contract, -mean[y log a + (1 - y) log(1 - a)], with no clamping,
  log(1 - a) as log1p(-a) for a < 1/4 and as log(1 - a) above: XLA's float64
  log1p on CPU is up to 129 ulp off for arguments near -0.414 (jax-ml/jax#39707),
  a known defect of one primitive that bpcheck's JAX oracle does not inherit.
- sse = 2 sum(optax.l2_loss), half_sse = sum(optax.l2_loss) (l2_loss is
  1/2 (a - y)^2), mse = mean(optax.squared_error), quadratic =
  sum(optax.squared_error) / (2B); bce_with_logits and softmax_cross_entropy
  are optax.sigmoid_binary_cross_entropy and
  optax.softmax_cross_entropy_with_integer_labels, averaged over all entries
  (over the B rows for softmax).
Deltas dC/dz_i are gradients with respect to a zero added to each z_i.
"""
from collections import defaultdict

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402

from bpcheck import ops  # noqa: E402
from bpcheck.core.spec import ACTIVATIONS as spec_activations  # noqa: E402

# Buckets are coarse on purpose: a compile costs ~1-2 s, a padded case at
# (depth 6, width 16, batch 8) ~0.04 ms. Measured on 420 mixed cases: these
# floors give 2 compiles; width >= 8, batch >= 4, depth step 3 gave 15
# compiles, 6x the cold time, and no faster warm runs (more part-full chunks).
CHUNK = 32  # cases per compiled call in the smallest bucket; bigger buckets take
CHUNK_VOLUME = CHUNK * 6 * 16 * 16  # fewer: at most this many weight/activation entries
MIN_WIDTH = 16  # widths pad to a power of two, at least this
MIN_BATCH = 8  # batches pad to this, wider ones to WIDE_BATCH (one bucket for them all)
WIDE_BATCH = 128
DEPTH_STEP = 6  # depths pad to a multiple of this

def _binding(name):
    """The activation record's JAX binding (jax.nn's own built-in), as a function of z."""
    record = ops.get(name)
    return lambda z: record.jax(jax, {"x": z}, {}, {})


# The activations are the records' bindings, but for leaky_relu: jax.nn.leaky_relu's derivative at 0 is
# 1 (a subgradient the record's kink admits), the contract's is 0.01.
ACTIVATIONS = {name: _binding(name) for name in spec_activations}
ACTIVATIONS["leaky_relu"] = lambda z: jnp.where(z > 0, z, 0.01 * z)


def _sum(e, t):
    """Sum of the real output entries of an elementwise loss (others are exactly 0)."""
    return jnp.sum(jnp.where(t["entries"], e, 0))


# Each loss sees the last activation a (the logits for the last two), the
# targets t (float y, integer labels, masks of the real entries and classes,
# and the real row and unit counts) and returns the contract's scalar.
LOSSES = {
    "sse": lambda a, t: 2 * _sum(optax.l2_loss(a, t["y"]), t),
    "half_sse": lambda a, t: _sum(optax.l2_loss(a, t["y"]), t),
    "mse": lambda a, t: _sum(optax.squared_error(a, t["y"]), t) / (t["rows"] * t["units"]),
    "quadratic": lambda a, t: _sum(optax.squared_error(a, t["y"]), t) / (2 * t["rows"]),
    "binary_cross_entropy": lambda a, t: -_sum(
        t["y"] * jnp.log(a) + (1 - t["y"]) * _log1m(a), t) / (t["rows"] * t["units"]),
    "bce_with_logits": lambda a, t: _sum(
        optax.sigmoid_binary_cross_entropy(a, t["y"]), t) / (t["rows"] * t["units"]),
    "softmax_cross_entropy": lambda a, t: jnp.sum(jnp.where(
        t["real_rows"],
        optax.softmax_cross_entropy_with_integer_labels(a, t["labels"], where=t["classes"]),
        0)) / t["rows"],
}
_ACT_CODE = {name: k for k, name in enumerate(ACTIVATIONS)}
_LOSS_CODE = {name: k for k, name in enumerate(LOSSES)}
_SAFE = 0.5  # what an unselected loss or masked entry sees: finite value and gradient everywhere


def _activate(code, z, real):
    """ACTIVATIONS[code](z) on the real units, exactly 0 elsewhere; each
    unselected candidate (and every padded unit) sees only zeros."""
    picked = [f(jnp.where((code == k) & real, z, 0)) for k, f in enumerate(ACTIVATIONS.values())]
    return jnp.where(real, lax.select_n(jnp.broadcast_to(code, z.shape), *picked), 0)


def _loss(code, a, y, labels, rows, units):
    """LOSSES[code] on the real rows x units of a; unselected losses see only _SAFE."""
    batch, width = a.shape
    real_rows = jnp.arange(batch) < rows
    classes = jnp.broadcast_to(jnp.arange(width) < units, a.shape)
    entries = real_rows[:, None] & classes
    counts = {"rows": rows.astype(a.dtype), "units": units.astype(a.dtype)}
    values = []
    for k, f in enumerate(LOSSES.values()):
        use = code == k
        t = {"y": jnp.where(use & entries, y, _SAFE), "labels": jnp.where(use & real_rows, labels, 0),
             "entries": use & entries, "real_rows": use & real_rows, "classes": classes, **counts}
        values.append(f(jnp.where(use & entries, a, _SAFE), t))
    return lax.select_n(code, *values)


def _network(Ws, bs, x, zeros, codes, units, loss_code, y, labels, rows):
    def layer(a_in, inputs):
        W, b, zero, code, n = inputs
        z = a_in @ W.T + b + zero
        a = _activate(code, z, jnp.arange(z.shape[-1]) < n)
        a = jnp.where(n == 0, a_in, a)  # a pass-through layer has no units of its own
        return a, (z, a)

    out, (zs, acts) = lax.scan(layer, x, (Ws, bs, zeros, codes, units))
    return _loss(loss_code, out, y, labels, rows, units[-1]), (zs, acts)


def _log1m(a):
    """log(1 - a): log1p(-a) below 1/4 (accurate there), log(1 - a) above (1 - a is exact from 1/2 on,
    rounds once below); each branch sees a safe value where it is not selected (no NaN gradient)."""
    small = a < 0.25
    return jnp.where(small, jnp.log1p(-jnp.where(small, a, 0.0)), jnp.log(1 - jnp.where(small, 0.5, a)))


def _one_case(Ws, bs, x, codes, units, loss_code, y, labels, rows):
    zeros = jnp.zeros((Ws.shape[0],) + x.shape, x.dtype)
    grad = jax.value_and_grad(_network, argnums=(0, 1, 2, 3), has_aux=True)
    (loss, (zs, acts)), (gW, gb, gx, deltas) = grad(Ws, bs, x, zeros, codes, units, loss_code, y,
                                                    labels, rows)
    return loss, gW, gb, gx, zs, acts, deltas


# One function, compiled once per (bucket, dtype, chunk size). An oracle's arithmetic is microseconds
# and its compile is seconds, so XLA compiles it without LLVM's optimisations (level 0: 2.5x faster to
# compile, still ~1 ms a case). Compiled code is kept on disk across processes and runs
# (jax's persistent compilation cache, in the user's cache directory; BPCHECK_JAX_CACHE=0 turns it off).
_jitted = jax.jit(jax.vmap(_one_case))
_executables = {}
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _compiled(*args):
    key = tuple((np.shape(a), np.asarray(a).dtype.str) for a in args)
    if key not in _executables:
        _executables[key] = _jitted.lower(*args).compile(compiler_options=COMPILER_OPTIONS)
    return _executables[key](*args)


def _use_disk_cache():
    import os
    if os.environ.get("BPCHECK_JAX_CACHE", "1") == "0" or jax.config.jax_compilation_cache_dir:
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", os.path.join(base, "bpcheck", "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_use_disk_cache()


def _volume(depth, width, batch):
    return depth * width * max(width, batch)


def _pow2(n, floor):
    return max(floor, 1 << (int(n) - 1).bit_length())


def _bucket(spec, batch):
    units = [spec["input_dim"]] + [layer["units"] for layer in spec["layers"]]
    depth = -(-len(spec["layers"]) // DEPTH_STEP) * DEPTH_STEP
    return depth, _pow2(max(units), MIN_WIDTH), MIN_BATCH if batch <= MIN_BATCH else _pow2(batch, WIDE_BATCH)


def _pack(items, size, depth, width, batch, dtype):
    """Stack padded cases into the compiled function's arguments; lanes past
    len(items) are fillers (x = 0, pass-through layers into one zero unit)."""
    Ws = np.zeros((size, depth, width, width), dtype)
    bs = np.zeros((size, depth, width), dtype)
    x = np.zeros((size, batch, width), dtype)
    codes = np.zeros((size, depth), np.int32)
    units = np.zeros((size, depth), np.int32)  # 0: a pass-through layer
    units[:, -1] = 1
    loss_code = np.zeros(size, np.int32)
    y = np.zeros((size, batch, width), dtype)
    labels = np.zeros((size, batch), np.int32)
    rows = np.ones(size, np.int32)
    for c, (spec, params, x_c, y_c) in enumerate(items):
        layers = spec["layers"]
        skip = depth - len(layers)
        for i, layer in enumerate(layers):
            W = np.asarray(params[f"layers.{i}.W"], dtype)
            Ws[c, skip + i, :W.shape[0], :W.shape[1]] = W
            bs[c, skip + i, :W.shape[0]] = np.asarray(params[f"layers.{i}.b"], dtype)
            codes[c, skip + i] = _ACT_CODE[layer["activation"]]
            units[c, skip + i] = layer["units"]
        x_c = np.asarray(x_c, dtype)
        x[c, :x_c.shape[0], :x_c.shape[1]] = x_c
        loss_code[c] = _LOSS_CODE[spec["loss"]]
        if spec["loss"] == "softmax_cross_entropy":
            labels[c, :len(y_c)] = np.asarray(y_c, np.int64)
        else:
            y_c = np.asarray(y_c, dtype)
            y[c, :y_c.shape[0], :y_c.shape[1]] = y_c
        rows[c] = x_c.shape[0]
    return Ws, bs, x, codes, units, loss_code, y, labels, rows


def _unpack(out, c, spec, batch, dtype):
    """Case c's Result, cut from a chunk's outputs (copies in the case dtype)."""
    loss, gW, gb, gx, zs, acts, deltas = out
    layers = spec["layers"]
    skip = gW.shape[1] - len(layers)
    copy = lambda t: np.array(t, dtype=dtype)
    result = {"loss": float(loss[c]), "grads": {}, "input_grad": copy(gx[c, :batch, :spec["input_dim"]]),
              "pre_activations": {}, "activations": {}, "deltas": {}}
    fan_in = spec["input_dim"]
    for i, layer in enumerate(layers):
        units, name, j = layer["units"], f"layers.{i}", skip + i
        result["grads"][f"{name}.W"] = copy(gW[c, j, :units, :fan_in])
        result["grads"][f"{name}.b"] = copy(gb[c, j, :units])
        result["pre_activations"][name] = copy(zs[c, j, :batch, :units])
        result["activations"][name] = copy(acts[c, j, :batch, :units])
        result["deltas"][name] = copy(deltas[c, j, :batch, :units])
        fan_in = units
    return result


def backprop_many(items):
    """Results for a list of (spec, params, x, y), in order, via few compiled calls."""
    items = list(items)
    groups = defaultdict(list)
    for index, (spec, params, x, y) in enumerate(items):
        dtype = np.dtype(spec["dtype"])
        groups[(_bucket(spec, np.shape(x)[0]), dtype)].append(index)
    results = [None] * len(items)
    for ((depth, width, batch), dtype), indices in groups.items():
        # One chunk size per bucket, a lone case included: a case's numbers must not depend on which
        # other cases share its call (bpcheck's reports must not depend on --jobs); fillers cost ~40 us.
        size = max(1, min(CHUNK, CHUNK_VOLUME // _volume(depth, width, batch)))
        for start in range(0, len(indices), size):
            chunk = indices[start:start + size]
            args = _pack([items[i] for i in chunk], size, depth, width, batch, dtype)
            out = [np.asarray(t) for t in _compiled(*args)]
            for c, i in enumerate(chunk):
                spec, _, x, _ = items[i]
                results[i] = _unpack(out, c, spec, np.shape(x)[0], dtype)
    return results


def warm(items):
    """Compile (or load from the disk cache) every function ``backprop_many(items)`` will call."""
    seen = set()
    for spec, params, x, y in items:
        key = (_bucket(spec, np.shape(x)[0]), np.dtype(spec["dtype"]))
        if key not in seen:
            seen.add(key)
            backprop_many([(spec, params, x, y)])


def backprop(spec, params, x, y):
    """One case's Result (in its bucket's chunk, with filler cases)."""
    return backprop_many([(spec, params, x, y)])[0]
