"""Case generation: the one recipe for specs and cases, driven by Hypothesis or by a seed.

A case belongs to a *family*. ``plain`` is the bulk: depth 1-6, widths and
batch 2-16 and 2-8, W ~ U(-2, 2)/sqrt(fan_in), b ~ U(-1/2, 1/2), x ~ U(-2, 2)
(never all zero), valid targets for the loss, never all ones. The *edge
families* put cases where public bug reports against real libraries show
backprop code breaking:

| family | what it draws | what it exposes |
|---|---|---|
| zero_kinks | exact zeros z = 0: zero rows of x with zero biases, and dead units (zero W row and bias) | derivatives at the kink (0/0, relu'(0)) |
| exp_overflow | a hidden layer (the focus activation's) and the output layer scaled so max z reaches 85-100 (float32) or 700-740 (float64); softmax logits placed so the rows' maxima span that range from 0 | exp overflow, also in the unused branch of a `where`; softmax shifted by the batch-wide max |
| saturated | the same, max abs z 8-40 | saturated sigmoid/tanh/softplus/gelu/elu tails, log(sigmoid) |
| one_unit | layers of one unit (the output too, but for softmax) | squeezes, broadcasting slips |
| square | every layer square (units = fan_in) | transposes that square shapes cannot reveal |
| batch1 | batch 1 | squeezed batch axes |
| wide_batch | batch 32-128 | reductions over the batch, sums of many terms |
| zero_x | x all zero (the only family where it is) | every layer-0 W gradient exactly zero |

``EDGE_SHARE`` (40%) of the cases of a run come from the edge families, the
rest are plain (``bpcheck.generate`` spreads them so that every family meets
every loss and every activation). Shapes come from the family (``one_unit``, ``square``,
``batch1``, ``wide_batch``), values from the family's recipe applied to plain
draws.

One recipe, three drivers (``Draws``): Hypothesis drawing every entry
(``arrays="drawn"``: slow, shrinks values too), Hypothesis drawing a seed for
NumPy (``arrays="seeded"``: shrinks shapes, fast), and a NumPy generator
alone (``numpy_case``: what ``bpcheck report`` and ``validate`` use, ~0.1 ms a
case). The same structure and value ranges in all three.
"""
import math
from contextlib import contextmanager

import numpy as np

from bpcheck import rounding
from bpcheck.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case, param_shapes

FAMILIES = ("plain", "zero_kinks", "exp_overflow", "saturated", "one_unit", "square", "batch1",
            "wide_batch", "zero_x")
EDGE_FAMILIES = FAMILIES[1:]
EDGE_SHARE = 0.4
# Families that fix shapes; the others only change values (and can follow any spec strategy).
SHAPE_FAMILIES = ("one_unit", "square", "batch1", "wide_batch")
OVERFLOW_Z = {"float32": (85.0, 100.0), "float64": (700.0, 740.0)}     # exp overflows past 88.7 / 709.8
SATURATED_Z = (8.0, 40.0)


# ---- drivers -------------------------------------------------------------------

class Draws:
    """What the recipe asks of a driver: integers, a choice, uniform arrays."""

    def integer(self, lo, hi):
        raise NotImplementedError

    def choice(self, options):
        return options[self.integer(0, len(options) - 1)]

    def uniform(self, shape, lo, hi):
        raise NotImplementedError


class NumpyDraws(Draws):
    def __init__(self, rng):
        self.rng = rng

    def integer(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def uniform(self, shape, lo, hi):
        return self.rng.uniform(lo, hi, size=shape)


class HypothesisDraws(Draws):
    """Hypothesis's ``draw``; ``seeded``: arrays from a NumPy generator seeded by one draw."""

    def __init__(self, draw, seeded=False):
        from hypothesis import strategies as st
        self.draw, self.st, self.rng = draw, st, None
        if seeded:
            self.rng = np.random.default_rng(draw(st.integers(0, 2**63 - 1), label="array seed"))

    def integer(self, lo, hi):
        return self.draw(self.st.integers(lo, hi))

    def choice(self, options):
        return self.draw(self.st.sampled_from(list(options)))

    def uniform(self, shape, lo, hi):
        if self.rng is not None:
            return self.rng.uniform(lo, hi, size=shape)
        import hypothesis.extra.numpy as hnp
        elements = self.st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False,
                                  width=32)
        return self.draw(hnp.arrays(np.float64, shape, elements=elements))


# ---- the recipe ----------------------------------------------------------------

def draw_spec(d, family="plain", *, activations=ACTIVATIONS, losses=LOSSES, dtypes=DTYPES,
              min_depth=1, max_depth=6, max_width=16, force=None):
    """A valid spec for ``family``: depth, widths, activations, a loss and its required last activation.
    ``force``: an activation put on at least one layer that can take it."""
    loss = d.choice(list(losses))
    dtype = d.choice(list(dtypes))
    depth = d.integer(min_depth, max_depth)
    need = LAST_ACTIVATION.get(loss)
    lo_width = 1 if family == "one_unit" else 2
    square = d.integer(2, max_width) if family == "square" else None
    layers = []
    for i in range(depth):
        last = i == depth - 1
        if square is not None:
            units = square
        elif family == "one_unit" and (not last or loss != "softmax_cross_entropy"):
            units = 1
        else:
            units = d.integer(2 if last and loss == "softmax_cross_entropy" else lo_width, max_width)
        activation = need if (last and need) else d.choice(list(activations))
        layers.append({"units": units, "activation": activation})
    if force and not any(layer["activation"] == force for layer in layers):
        free = [i for i in range(depth) if not (need and i == depth - 1)]
        if free:
            layers[d.choice(free)]["activation"] = force
    input_dim = square if square is not None else d.integer(lo_width, max_width)
    return {"input_dim": input_dim, "layers": layers, "loss": loss, "dtype": dtype}


def draw_batch(d, family, max_batch=8):
    if family == "batch1":
        return 1
    if family == "wide_batch":
        return d.integer(32, 128)
    return d.integer(2, max_batch)


def draw_case(d, spec, family="plain", *, batch=None, focus=None):
    """A Case of ``family`` for ``spec``: parameters, inputs and valid targets (float64 math, then
    cast once to the spec's dtype). ``focus``: the activation the family's values aim at (the
    exp_overflow and saturated families scale its first hidden layer, then the output layer)."""
    dtype = spec["dtype"]
    batch = draw_batch(d, family) if batch is None else batch
    params = {}
    for name, shape in param_shapes(spec).items():
        if name.endswith(".W"):
            params[name] = d.uniform(shape, -2.0, 2.0) / math.sqrt(shape[1])
        else:
            params[name] = d.uniform(shape, -0.5, 0.5)
    x = d.uniform((batch, spec["input_dim"]), -2.0, 2.0)
    if family != "zero_x" and not np.any(x):
        x[0, 0] = 1.0            # a drawn all-zero x would hide every layer-0 W gradient
    units = spec["layers"][-1]["units"]
    if spec["loss"] == "softmax_cross_entropy":
        y = np.array([d.integer(0, units - 1) for _ in range(batch)], dtype=np.int64)
    elif spec["loss"] in ("binary_cross_entropy", "bce_with_logits"):
        y = d.uniform((batch, units), 0.0, 1.0)
    else:
        y = d.uniform((batch, units), -2.0, 2.0)
    if family == "zero_x":
        x = np.zeros_like(x)
    elif family == "zero_kinks":
        _zero_kinks(d, spec, params, x)
    elif family in ("exp_overflow", "saturated"):
        lo, hi = OVERFLOW_Z[dtype] if family == "exp_overflow" else SATURATED_Z
        _scale_layers(d, spec, params, x, lo, hi, focus, positive=family == "exp_overflow")
    cast = {k: v.astype(dtype) for k, v in params.items()}
    y = y if spec["loss"] == "softmax_cross_entropy" else y.astype(dtype)
    return Case(spec, cast, x.astype(dtype), y, id="generated", meta={"family": family})


def _zero_kinks(d, spec, params, x):
    """Exact zeros z = 0: some rows of x zero with zero layer-0 biases, and in each deeper
    relu/leaky_relu layer a dead unit (zero W row, zero bias): exact in any arithmetic."""
    rows = sorted({d.integer(0, x.shape[0] - 1) for _ in range(max(1, x.shape[0] // 3))})
    x[rows] = 0.0
    b0 = params["layers.0.b"]
    for j in {d.integer(0, b0.size - 1) for _ in range(max(1, b0.size // 2))}:
        b0[j] = 0.0
    for i, layer in enumerate(spec["layers"]):
        if i and layer["activation"] in ("relu", "leaky_relu", "elu"):
            j = d.integer(0, layer["units"] - 1)
            params[f"layers.{i}.W"][j] = 0.0
            params[f"layers.{i}.b"][j] = 0.0


def _scale_layers(d, spec, params, x, lo, hi, focus=None, positive=False):
    """Scale W and b of the first hidden layer with activation ``focus`` (else of a drawn hidden
    layer, if any) and of the output layer so that each one's largest |z| (largest z, with
    ``positive``: where exp overflows), in the float64 forward pass of the drawn values, lands in
    [lo, hi]: the activation and the logits both reach the edge. Softmax logits with ``positive``
    (exp_overflow) are placed instead so that the rows' largest logits span [lo, hi], from 0 up:
    the largest z lands in [lo, hi] as before, and one row lies that far below the batch's
    maximum (a softmax shifted by the batch-wide max underflows there)."""
    depth = len(spec["layers"])
    hidden = [i for i, layer in enumerate(spec["layers"][:-1]) if focus is None or layer["activation"] == focus]
    targets = {depth - 1} | ({hidden[0] if focus else d.choice(hidden)} if hidden else set())
    a = x
    for i, layer in enumerate(spec["layers"]):
        W, b = params[f"layers.{i}.W"], params[f"layers.{i}.b"]
        z = a @ W.T + b
        if i in targets:
            row_max = np.max(z, axis=1)
            spread = float(np.ptp(row_max))
            peak = float(np.max(z) if positive and np.max(z) > 1e-3 else np.max(np.abs(z)))
            if positive and i == depth - 1 and spec["loss"] == "softmax_cross_entropy" and spread > 1e-3:
                # the rows' largest logits span [lo, hi] and the lowest of them sits at 0: the largest
                # z still lands in [lo, hi], and a row lies that far below the batch's maximum
                factor = d.uniform((), lo, hi).item() / spread
                shift = float(np.min(row_max)) * factor
                params[f"layers.{i}.W"], params[f"layers.{i}.b"] = W * factor, b * factor - shift
                z = z * factor - shift
            elif peak > 1e-3:                    # a layer with nothing to scale keeps its values
                factor = d.uniform((), lo, hi).item() / peak
                params[f"layers.{i}.W"], params[f"layers.{i}.b"] = W * factor, b * factor
                z = z * factor
        a = rounding.activation(layer["activation"], z)[0]


def numpy_case(rng, *, family="plain", force=None, **spec_options):
    """One case from a NumPy generator: the runner's fast path (same recipe as ``cases``)."""
    d = NumpyDraws(rng)
    spec = draw_spec(d, family, force=force, **spec_options)
    return draw_case(d, spec, family, focus=force)


def pick_family(d, edge_share=EDGE_SHARE, families=EDGE_FAMILIES):
    """plain with probability 1 - edge_share, else one of ``families`` uniformly."""
    if not families or d.integer(0, 9999) >= round(edge_share * 10000):
        return "plain"
    return d.choice(list(families))


# ---- Hypothesis strategies -------------------------------------------------------

def specs(*, activations=ACTIVATIONS, losses=LOSSES, dtypes=DTYPES, min_depth=1, max_depth=6,
          max_width=16, family="plain"):
    """A Hypothesis strategy for valid specs of ``family``."""
    from hypothesis import strategies as st

    @st.composite
    def strategy(draw):
        return draw_spec(HypothesisDraws(draw), family, activations=activations, losses=losses,
                         dtypes=dtypes, min_depth=min_depth, max_depth=max_depth, max_width=max_width)
    return strategy()


def cases(spec_strategy=None, *, families=FAMILIES, edge_share=EDGE_SHARE, arrays="drawn", **spec_options):
    """A Hypothesis strategy for Cases.

    The family is drawn first (plain with probability 1 - ``edge_share``, shrinking towards
    plain), then the spec -- from ``spec_strategy`` if given (then shape families are left
    out) or for the family with ``spec_options`` (``activations``, ``losses``, ``dtypes``,
    ``min_depth``, ``max_depth``) -- then the values: every entry drawn by Hypothesis
    (``arrays="drawn"``) or from one drawn seed (``"seeded"``).
    """
    from hypothesis import strategies as st
    if arrays not in ("drawn", "seeded"):
        raise ValueError(f"arrays must be 'drawn' or 'seeded', not {arrays!r}")
    edges = [f for f in families if f != "plain" and not (spec_strategy is not None and f in SHAPE_FAMILIES)]

    @st.composite
    def strategy(draw):
        d = HypothesisDraws(draw, seeded=arrays == "seeded")
        family = pick_family(d, edge_share if "plain" in families else 1.0, edges)
        spec = draw(spec_strategy) if spec_strategy is not None else draw_spec(d, family, **spec_options)
        return draw_case(d, spec, family)
    return strategy()


@contextmanager
def reproducible():
    """Hypothesis (>= 6.131) sometimes draws literals found in the source of the project's own
    imported modules, so the same seed gives other cases after an unrelated import or edit.
    Inside this block it uses an empty pool of local constants instead (a private Hypothesis
    hook; if it moves, generation still works, only less reproducibly)."""
    try:
        from hypothesis.internal.conjecture import providers
        original, empty = providers._get_local_constants, providers.Constants()
    except (ImportError, AttributeError):
        yield
        return
    providers._get_local_constants = lambda: empty
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()
