"""Case generation: the one recipe for specs and cases, driven by Hypothesis or by a seed.

A case belongs to a *family*. ``plain`` is the bulk: depth 1-6, widths and
batch 2-16 and 2-8, W ~ U(-2, 2)/sqrt(fan_in), b ~ U(-1/2, 1/2), x ~ U(-2, 2)
(never all zero), valid targets for the loss, never all ones. The *edge
families* put cases where public bug reports against real libraries show
backprop code breaking:

| family | what it draws | what it exposes |
|---|---|---|
| zero_kinks | exact zeros z = 0 at the input of every layer, logits included: zero rows of x with zero biases, and a dead unit (zero W row and bias) in every layer | derivatives at the kink (relu'(0)) and 0/0 in smooth ones (silu' as a/z), a logit of exactly 0 |
| exp_overflow | the target layers (below) wholly in z in [85, 110] (float32) / [700, 760] (float64): past exp's overflow (88.7 / 709.8) and past the point where e^-z underflows to 0 (104.0 / 745.1), each threshold with units on both sides; softmax logits placed so that the rows' maxima span more than 104 / 745 from 0 and so does each row, the target of every other row at its row's minimum | exp overflow, also in the unused branch of a `where`; softmax without its max, shifted by the batch-wide max, or taken as log(p) of an underflowed p |
| exp_overflow_neg | the same with z in [-110, -85] / [-760, -700] | e^-z overflow for z << 0: log(1 + e^-z), an unused branch, 1/e^z |
| saturated | the target layers wholly in z in [8, 40], each unit at its own level so that 1 - sigmoid rounding to 0 (16.6 / 36.7) and float32-derived cut-overs (13.9) in float64 have units on both sides | saturated sigmoid/tanh/softplus/gelu/elu tails, log(sigmoid), tanh via e^2z |
| saturated_neg | the same with z in [-40, -8] | tails where a formula with absolute accuracy loses all of it: sigmoid as (1 + tanh(z/2))/2, softplus' as (e^a - 1)/e^a |
| one_unit | layers of one unit (the output too, but for softmax) | squeezes, broadcasting slips |
| square | every layer square (units = fan_in) | transposes that square shapes cannot reveal |
| batch1 | batch 1 | squeezed batch axes |
| wide_batch | batch 32-128 | reductions over the batch, sums of many terms |
| zero_x | x all zero (the only family where it is) | every layer-0 W gradient exactly zero |

``EDGE_SHARE`` (40%) of the cases of a run come from the edge families, the
rest are plain (``bpcheck.cases.generate`` spreads them so that every family meets
every loss and every activation). Shapes come from the family (``one_unit``, ``square``,
``batch1``, ``wide_batch``), values from the family's recipe applied to plain
draws. The *target layers* of a value family are the first hidden layer with the
focus activation and the output layer: each is placed *wholly* in the family's
region, every unit at its own level spread evenly over the range (the range's
ends included), so that a tail carries the tensor's norm and every threshold
inside the range has units on both sides (``REGIONS``, ``THRESHOLDS``).

One recipe, three drivers (``Draws``): Hypothesis drawing every entry
(``arrays="drawn"``: slow, shrinks values too), Hypothesis drawing a seed for
NumPy (``arrays="seeded"``: shrinks shapes, fast), and a NumPy generator
alone (``numpy_case``: what ``bpcheck report`` and ``validate`` use, ~0.1 ms a
case). The same structure and value ranges in all three.
"""
import math
from contextlib import contextmanager

import numpy as np

from bpcheck.core.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case, n_params, param_shapes
from bpcheck.ops import network

FAMILIES = ("plain", "zero_kinks", "exp_overflow", "exp_overflow_neg", "saturated", "saturated_neg",
            "one_unit", "square", "batch1", "wide_batch", "zero_x")
EDGE_FAMILIES = FAMILIES[1:]
EDGE_SHARE = 0.4
# Families that fix shapes; the others only change values (and can follow any spec strategy).
SHAPE_FAMILIES = ("one_unit", "square", "batch1", "wide_batch")
MAX_WIDTH = 16          # the widest layer drawn (draw_spec's default max_width)
OVERFLOW_Z = {"float32": (85.0, 110.0), "float64": (700.0, 760.0)}
SATURATED_Z = {"float32": (8.0, 40.0), "float64": (8.0, 40.0)}
# family -> (sign, |z| range per dtype) of its target layers
REGIONS = {"exp_overflow": (1, OVERFLOW_Z), "exp_overflow_neg": (-1, OVERFLOW_Z),
           "saturated": (1, SATURATED_Z), "saturated_neg": (-1, SATURATED_Z)}
# softmax logits in exp_overflow: a row's span (its max minus its min) in this range, past the
# point where e^(z - max) underflows to 0 (log(2^-150) = -104.0, log(2^-1075) = -745.1)
SOFTMAX_SPAN = {"float32": (104.5, 110.0), "float64": (746.0, 760.0)}
# |z| where a common way of writing a formula breaks, per dtype (each inside a family's range, so
# its target layers have units on both sides): e^z overflows, e^z underflows to 0, e^2z overflows
# (tanh as (e^2z - 1)/(e^2z + 1)), 1 + e^-z rounds to 1 (1 - sigmoid = 0), and in float64 the
# float32-derived cut-over -log(eps32) of a softplus written for float32
def _thresholds(dtype):
    info = np.finfo(dtype)
    out = {"exp overflows": math.log(float(info.max)),                          # 88.72 / 709.78
           "exp underflows to 0": -(math.log(float(info.smallest_subnormal)) - math.log(2)),  # 103.97 / 745.13
           "exp(2z) overflows": math.log(float(info.max)) / 2,                  # 44.36 / 354.89
           "1 + exp(-z) rounds to 1": -math.log(float(info.eps) / 2)}           # 16.64 / 36.74
    if dtype == "float64":
        out["float32's -log(eps)"] = -math.log(float(np.finfo(np.float32).eps))  # 15.94
    return out


THRESHOLDS = {dtype: _thresholds(dtype) for dtype in DTYPES}


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
              min_depth=1, max_depth=6, max_width=MAX_WIDTH, force=None, hidden=None, last=None, max_params=None):
    """A valid spec for ``family``: depth, widths, activations, a loss and its required last activation.
    ``force``: an activation put on at least one layer that can take it; ``hidden``: an activation
    put on the first layer (when depth >= 2); ``last``: the output layer's activation, where the
    loss does not fix it; ``max_params``: the widest layers narrowed, one unit at a time, until
    the network has at most that many parameters (or every width is at its family's least)."""
    loss = d.choice(list(losses))
    dtype = d.choice(list(dtypes))
    depth = d.integer(min_depth, max_depth)
    need = LAST_ACTIVATION.get(loss)
    lo_width = 1 if family == "one_unit" else 2
    square = d.integer(2, max_width) if family == "square" else None
    layers = []
    for i in range(depth):
        last_layer = i == depth - 1
        if square is not None:
            units = square
        elif family == "one_unit" and (not last_layer or loss != "softmax_cross_entropy"):
            units = 1
        else:
            units = d.integer(2 if last_layer and loss == "softmax_cross_entropy" else lo_width, max_width)
        activation = need if (last_layer and need) else d.choice(list(activations))
        layers.append({"units": units, "activation": activation})
    if force and not any(layer["activation"] == force for layer in layers):
        free = [i for i in range(depth) if not (need and i == depth - 1)]
        if free:
            layers[d.choice(free)]["activation"] = force
    if hidden and depth >= 2:
        layers[0]["activation"] = hidden
    if last and not need:
        layers[-1]["activation"] = last
    input_dim = square if square is not None else d.integer(lo_width, max_width)
    spec = {"input_dim": input_dim, "layers": layers, "loss": loss, "dtype": dtype}
    return spec if max_params is None else _narrowed(spec, max_params, lo_width)


def _narrowed(spec, max_params, lo_width):
    """``spec`` with its widest layers (input included) narrowed until it has at most ``max_params``
    parameters: a square spec stays square, a softmax output keeps two units."""
    square = len({spec["input_dim"], *(layer["units"] for layer in spec["layers"])}) == 1
    while n_params(spec) > max_params:
        if square:
            if spec["input_dim"] <= 2:
                break
            spec["input_dim"] -= 1
            for layer in spec["layers"]:
                layer["units"] -= 1
            continue
        floors = [lo_width] + [2 if (i == len(spec["layers"]) - 1 and spec["loss"] == "softmax_cross_entropy")
                               else lo_width for i in range(len(spec["layers"]))]
        widths = [spec["input_dim"]] + [layer["units"] for layer in spec["layers"]]
        k = max(range(len(widths)), key=lambda j: (widths[j] - floors[j], -j))
        if widths[k] <= floors[k]:
            break
        if k == 0:
            spec["input_dim"] -= 1
        else:
            spec["layers"][k - 1]["units"] -= 1
    return spec


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
    elif family in REGIONS:
        sign, ranges = REGIONS[family]
        y = _place_layers(d, spec, params, x, y, sign, ranges[dtype], focus, family)
    cast = {k: v.astype(dtype) for k, v in params.items()}
    y = y if spec["loss"] == "softmax_cross_entropy" else y.astype(dtype)
    return Case(spec, cast, x.astype(dtype), y, id="generated", meta={"family": family})


def _zero_kinks(d, spec, params, x):
    """Exact zeros z = 0 at the input of every layer, whatever its activation (a smooth one may
    divide by z or by a) and the logits too: some rows of x zero with zero layer-0 biases, and in
    every layer of two or more units a dead unit (zero W row, zero bias): exact in any arithmetic."""
    rows = sorted({d.integer(0, x.shape[0] - 1) for _ in range(max(1, x.shape[0] // 3))})
    x[rows] = 0.0
    b0 = params["layers.0.b"]
    for j in {d.integer(0, b0.size - 1) for _ in range(max(1, b0.size // 2))}:
        b0[j] = 0.0
    for i, layer in enumerate(spec["layers"]):
        if i and layer["units"] >= 2:
            j = d.integer(0, layer["units"] - 1)
            params[f"layers.{i}.W"][j] = 0.0
            params[f"layers.{i}.b"][j] = 0.0


def _levels(d, n, lo, hi):
    """``n`` levels spread evenly over [lo, hi], both ends included (one level: drawn), in a drawn order."""
    if n == 1:
        return np.array([d.uniform((), lo, hi).item()])
    levels = np.linspace(lo, hi, n)
    order = np.argsort(d.uniform((n,), 0.0, 1.0), kind="stable")
    return levels[order]


def _place_layers(d, spec, params, x, y, sign, bounds, focus, family):
    """Put the target layers -- the first hidden layer with activation ``focus`` (else a drawn hidden
    layer, if any) and the output layer; only the output layer for a loss that fixes the output
    activation (the logits, or BCE's sigmoid) -- wholly in the region ``sign`` x [lo, hi]: unit j's
    pre-activations at its own level c_j (``_levels``) give or take w = min(1/2, (hi - lo) / 8n)
    across the batch (less where the drawn rows differ by less than 1), by an affine change of the unit's W row and bias in the float64 forward pass of
    the drawn values. Returns ``y`` (softmax targets may move, see ``_place_softmax``)."""
    lo, hi = bounds
    depth = len(spec["layers"])
    hidden = [i for i, layer in enumerate(spec["layers"][:-1]) if focus is None or layer["activation"] == focus]
    targets = {depth - 1} | ({hidden[0] if focus else d.choice(hidden)} if hidden else set())
    if spec["loss"] in LAST_ACTIVATION:      # the logits alone: the hidden rows must differ for softmax's rows
        targets = {depth - 1}
    a = x
    for i, layer in enumerate(spec["layers"]):
        W, b = params[f"layers.{i}.W"], params[f"layers.{i}.b"]
        z = network.affine(a, W, b)
        if i == depth - 1 and spec["loss"] == "softmax_cross_entropy" and sign > 0 and family == "exp_overflow":
            z, y = _place_softmax(d, params, i, z, y, SOFTMAX_SPAN[spec["dtype"]])
        elif i in targets:
            n = z.shape[1]
            centre = z.mean(axis=0)
            spread = np.ptp(z, axis=0)
            w = min(0.5, (hi - lo) / (8 * n))
            factor = w / np.maximum(spread, 1.0)         # |W| never grows: rows that hardly differ stay so
            level = sign * _levels(d, n, lo, hi)
            params[f"layers.{i}.W"] = W * factor[:, None] * sign
            params[f"layers.{i}.b"] = sign * (b - centre) * factor + level
            z = network.affine(a, params[f"layers.{i}.W"], params[f"layers.{i}.b"])
        a = network.activate(layer["activation"], z)
    return y


def _place_softmax(d, params, i, z, y, span):
    """Softmax logits for exp_overflow: the rows' largest logits span [0, H] (H drawn in ``span``, past
    the point where e^-H underflows to 0), so a softmax shifted by the batch's maximum underflows on
    some row (the rows in between lose digits to subnormals); within each row the units sit
    at levels c_j spread over [-S, 0] (S drawn in ``span``), so that e^(z - max) underflows to 0 on
    some unit of every row; every other row's target is its row's lowest logit (log(p) of an
    underflowed p is -inf where the loss is finite). z_bj = r_b + c_j + (at most 1/2): every W row is
    the drawn row v with the widest spread over the batch, times one factor, plus a trace of its own
    row (so W's rows differ), and the biases carry c_j."""
    W, b = params[f"layers.{i}.W"], params[f"layers.{i}.b"]
    n = z.shape[1]
    proj = z - b                                        # a_{i-1} W^T of the drawn values
    k = int(np.argmax(np.ptp(proj, axis=0)))
    r = proj[:, k]
    spread = float(np.ptp(r))
    factor = d.uniform((), *span).item() / spread if spread > 1e-2 else 0.0   # rows alike: left alike
    own = proj - r[:, None]                             # what each row adds to v's projection
    trace = 0.5 / max(float(np.max(np.abs(own))), 1e-300) if np.any(own) else 0.0
    level = -_levels(d, n, 0.0, d.uniform((), *span).item())
    params[f"layers.{i}.W"] = (W[k] * factor)[None, :] + (W - W[k]) * trace
    params[f"layers.{i}.b"] = level - float(np.min(r)) * factor
    z = (r[:, None] - float(np.min(r))) * factor + own * trace + level
    y = np.array(y, copy=True)
    y[::2] = np.argmin(z[::2], axis=1)
    return z, y


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
          max_width=MAX_WIDTH, family="plain"):
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
