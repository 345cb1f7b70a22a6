"""Families of the recurrent records (bpcheck/ops/catalog/recurrent.py): what each case must satisfy.

``tests/ops/test_families.py`` reads ``PREDICATES`` (and ``EXPLAIN``) from here:

- ``saturated_gates``: at least half of the pre-activation entries a = x_t Wx + h_{t-1} Wh + b, over
  every gate and every time step, have |a| >= 8 -- past where tanh(a) and sigmoid(a) are within
  4e-7 and 3.4e-4 of their limits, so their derivatives are dominated by the rounding of 1 - t^2 and
  s (1 - s) in float32. A plain draw (a of order 1) has none.
- ``nonzero_state``: a step's incoming state far from zero: every |prev_h| >= 0.5, and for the LSTM
  every |prev_c| >= 1 (the state after many steps, where df = dc prev_c and the Wh terms are large).
- ``one_step``: a sequence of one time step (T = 1): no gradient flows between steps.
- ``long_sequence``: T >= 6, past the plain draw's 2..5 steps: the gradient passes through five or
  more recurrent Jacobians.
"""
import numpy as np

SATURATION = 8.0


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _pre_activations(op, case):
    """Every pre-activation entry of every step, float64 (the recurrence run in NumPy)."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in case.inputs.items()}
    sequence = "h0" in a
    xs = [a["x"][:, t, :] for t in range(a["x"].shape[1])] if sequence else [a["x"]]
    h = a["h0"] if sequence else a["prev_h"]
    c = np.zeros_like(h) if sequence else a.get("prev_c")
    found = []
    for x in xs:
        z = x @ a["Wx"] + h @ a["Wh"] + a["b"]
        found.append(z.ravel())
        if op.name.startswith("lstm"):
            i, f, o, g = np.split(z, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:
            h = np.tanh(z)
    return np.concatenate(found)


def _saturated_share(op, case):
    return float(np.mean(np.abs(_pre_activations(op, case)) >= SATURATION))


def _nonzero_state(op, case):
    if "prev_h" not in case.inputs:
        return False
    ok = bool(np.all(np.abs(case.inputs["prev_h"]) >= 0.5))
    if "prev_c" in case.inputs:
        ok = ok and bool(np.all(np.abs(case.inputs["prev_c"]) >= 1.0))
    return ok


def _steps(case):
    return case.inputs["x"].shape[1] if "h0" in case.inputs else None


PREDICATES = {
    "saturated_gates": lambda op, c: _saturated_share(op, c) >= 0.5,
    "nonzero_state": _nonzero_state,
    "one_step": lambda op, c: _steps(c) == 1,
    "long_sequence": lambda op, c: _steps(c) is not None and _steps(c) >= 6,
}

EXPLAIN = {
    "saturated_gates": lambda op, c: f"share of |a| >= {SATURATION:g}: {_saturated_share(op, c):.3g}",
    "nonzero_state": lambda op, c: "smallest |prev_h| {:.3g}".format(np.min(np.abs(c.inputs["prev_h"])))
    if "prev_h" in c.inputs else "no prev_h",
    "one_step": lambda op, c: f"T = {_steps(c)}",
    "long_sequence": lambda op, c: f"T = {_steps(c)}",
}
