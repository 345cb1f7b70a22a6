"""Hypothesis strategies for specs and cases: the one place inputs are generated.

Parameters and inputs are drawn with ``hypothesis.extra.numpy`` as values in
[-2, 2] and then scaled: W by 1/sqrt(fan_in) so that every z_i stays of order
one whatever the width, x as drawn. Targets are valid for the loss: any real
for the squared losses, probabilities in [0, 1] for the cross-entropies,
integer classes for softmax cross-entropy. Arrays are never all ones.
No subnormals: XLA on CPU flushes them to zero, a platform convention that
would otherwise dominate every float32 comparison that meets one.
"""
import math

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

from bpcheck.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case, param_shapes

_VALUES = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32)


@st.composite
def specs(draw, *, activations=ACTIVATIONS, losses=LOSSES, dtypes=DTYPES,
          min_depth=1, max_depth=6, max_width=16, max_input_dim=16):
    """A valid spec: depth, widths, activations, a loss and its required last activation."""
    loss = draw(st.sampled_from(list(losses)))
    dtype = draw(st.sampled_from(list(dtypes)))
    depth = draw(st.integers(min_depth, max_depth))
    need = LAST_ACTIVATION.get(loss)
    layers = []
    for i in range(depth):
        last = i == depth - 1
        units = draw(st.integers(2 if last and loss == "softmax_cross_entropy" else 1, max_width))
        activation = need if (last and need) else draw(st.sampled_from(list(activations)))
        layers.append({"units": units, "activation": activation})
    return {"input_dim": draw(st.integers(1, max_input_dim)), "layers": layers,
            "loss": loss, "dtype": dtype}


def _array(shape):
    return hnp.arrays(np.float64, shape, elements=_VALUES)


@st.composite
def cases(draw, spec_strategy=None, *, max_batch=8):
    """A Case for a drawn spec: scaled parameters, inputs and valid targets."""
    spec = draw(spec_strategy if spec_strategy is not None else specs())
    dtype = spec["dtype"]
    batch = draw(st.integers(1, max_batch))
    params = {}
    for name, shape in param_shapes(spec).items():
        scale = 1 / math.sqrt(shape[1]) if name.endswith(".W") else 0.5
        params[name] = (draw(_array(shape)) * scale).astype(dtype)
    x = draw(_array((batch, spec["input_dim"]))).astype(dtype)
    units = spec["layers"][-1]["units"]
    if spec["loss"] == "softmax_cross_entropy":
        y = draw(hnp.arrays(np.int64, (batch,), elements=st.integers(0, units - 1)))
    elif spec["loss"] in ("binary_cross_entropy", "bce_with_logits"):
        y = draw(hnp.arrays(np.float64, (batch, units), elements=st.floats(0, 1, allow_subnormal=False, width=32))).astype(dtype)
    else:
        y = draw(_array((batch, units))).astype(dtype)
    return Case(spec, params, x, y, id="generated")
