"""Diagnosis a person can act on: the first wrong link of the chain rule, and why.

Given one failing case -- the candidate's result, the truth and the compared
rows (``bpcheck.judge.compare``) -- walk the network in the order the chain rule
does: the forward pass (each layer's activation, then the loss), then backward
from the output (for each layer: its delta dC/dz, then dC/db and dC/dW), then
the input gradient. The first tensor that is really wrong (class bug or
precision) is where to look: every tensor after it may only inherit its error.

For that tensor the hints read the metrics and test a few classic slips
against the truth, each by the same tolerance the row failed:

- a constant factor: the gradient is s x the truth; s = 2, 1/2, B, 1/B, D, ...
  names the reduction or the missing 1/2;
- the sign flipped (s = -1);
- the transpose of the truth (BP4 as a_prev.T @ delta; a reshape can hide it);
- wrong only where z = 0: the derivative's convention at a kink;
- BP2 with f'(a) instead of f'(z), or without the f' factor at all;
- exact zeros where the truth is tiny: a formula with absolute accuracy that underflowed;
- an infinite loss: which log of which underflowed probability, and the stable form;
- and always the equation (BP1-BP4) that produces the tensor.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from bpcheck import ops
from bpcheck.core.rounding import norm2
from bpcheck.judge.bounds import UNIT_ROUNDOFF
from bpcheck.judge.classify import REAL, one_sided
from bpcheck.judge.compare import describe, lookup
from bpcheck.judge.judge import _TENSORS, chain_order, first_divergence
from bpcheck.ops import network
from bpcheck.ops.algebra import Plain


def look_at(row, rows):
    """The equation that produces the tensor of ``row``."""
    i, tensor = row["layer"], row["tensor"]
    last = max((r["layer"] for r in rows if r["layer"] is not None), default=0)
    ok = {(r["layer"], r["tensor"]) for r in rows if r["class"] == "pass"}
    if tensor == "loss":
        return "the forward pass or the loss formula (README, \"Conventions\": the table of losses)"
    if tensor == "activation":
        return f"the forward pass of layer {i}: z = a_prev @ W.T + b, a = {row['activation']}(z)"
    if tensor == "input_grad":
        return "dC/dx = delta_0 @ W_0"
    if tensor == "delta" and i == last:
        return (f"BP1: delta_{i} = dC/da ⊙ {row['activation']}'(z_{i}): the loss derivative "
                "or the output activation's derivative")
    if tensor == "delta":
        known = f"; delta_{i + 1} is right" if (i + 1, "delta") in ok else ""
        return (f"BP2 at layer {i}: delta_{i} = (delta_{i + 1} @ W_{i + 1}) ⊙ {row['activation']}'(z_{i})"
                f"{known}")
    known = f" (delta_{i} itself is right)" if (i, "delta") in ok else ""
    if tensor == "b":
        return f"BP3: dC/db_{i} = delta_{i} summed over the batch{known}"
    return f"BP4: dC/dW_{i} = delta_{i}.T @ a_{i - 1 if i else 'x'}{known}"


def _factors(case):
    batch, units = case.batch, case.spec["layers"][-1]["units"]
    named = [(2.0, "a missing ½ (the derivative of ½(a−y)² is a − y)?"),
             (0.5, "a stray ½, or a − y where the loss needs 2(a − y)?"),
             (batch, f"sum instead of mean over the batch (B = {batch})?"),
             (1 / batch, f"mean instead of sum over the batch (B = {batch}): BP3/BP4 sum, "
                         "the loss already carries its 1/B?"),
             (units, f"summed over the {units} outputs where the loss averages?"),
             (1 / units, f"averaged over the {units} outputs where the loss sums?"),
             (batch * units, f"sum instead of mean over all B·D = {batch * units} entries?"),
             (1 / (batch * units), f"mean over all B·D = {batch * units} entries where the loss sums?")]
    return [(f, text) for f, text in named if f != 1]


def _as_tensor(delta, row, case, truth):
    """A delta-shaped array carried to the row's tensor: delta itself, its BP3 sum or its BP4 product."""
    i = row["layer"]
    if row["tensor"] == "delta":
        return delta
    if row["tensor"] == "b":
        return delta.sum(axis=0)
    a_prev = case.x if i == 0 else truth["activations"][f"layers.{i - 1}"]
    return delta.T @ np.asarray(a_prev, np.float64)


def _shape_hints(row):
    note = row.get("note") or ""
    if "no gradient" in note:
        return ["the gradient is missing from the result's 'grads' (named layers.{i}.W and layers.{i}.b)"]
    if row["tensor"] == "W" and "transpose" in note:
        return ["the transpose of dC/dW: BP4 is delta.T @ a_prev, shape (units, fan_in) like W"]
    if row["tensor"] == "b" and "shape" in note:
        return ["BP3 sums delta over the batch axis (axis 0): dC/db has shape (units,) like b"]
    if "dtype" in note:
        return [f"compute and return in the spec's dtype ({row['dtype']}); NumPy 2 promotes float32 "
                "with a np.float64 scalar to float64"]
    return [note] if note else []


def hints(row, result, truth, case):
    """Hypotheses for why the tensor of ``row`` is wrong, each tested on the arrays."""
    if lookup(result, row["layer"], row["tensor"]) is None:     # wrong shape or dtype, or missing
        return _shape_hints(row)
    g = np.asarray(lookup(result, row["layer"], row["tensor"]), np.float64)
    t = np.asarray(lookup(truth, row["layer"], row["tensor"]), np.float64)
    u = UNIT_ROUNDOFF[row["dtype"]]
    # A slip explains the tensor when it is 100x closer to it than the truth is (and within u^0.5, or
    # the row's own tolerance): rounding in the candidate's version of the slip must not hide it.
    limit = max(row["tol_u"], min(row["err_u"] / 100, u ** -0.5))

    def close(a, b):
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        with np.errstate(all="ignore"):
            return a.shape == b.shape and bool(np.all(np.isfinite(a))) and bool(
                norm2(a - b) / max(norm2(b), np.finfo(np.float64).tiny) / u <= limit)
    if not np.all(np.isfinite(g)):
        return [_non_finite_hint(row, g, case)]
    out = []
    lost = (g == 0) & (t != 0)
    if lost.any() and np.max(np.abs(t[lost])) <= 4 * u * max(1.0, float(np.max(np.abs(t)))):
        out.append(_absolute_accuracy_hint(row, lost, t))
    elif not np.any(g) and np.any(t):
        out.append("all zeros where the truth is not: never computed, or overwritten?")
    specific = []
    if g.ndim == 2 and g.shape[0] > 1 and g.shape[1] > 1 and close(g.ravel(), t.T.ravel()):
        specific.append("matches the transpose of the truth: a_prev.T @ delta where BP4 needs "
                        "delta.T @ a_prev (a reshape can hide the .T)")
    if row["layer"] is not None and row["tensor"] in _TENSORS:
        specific += _kink_hint(row, g, t, u, case, truth) + _bp2_hints(row, g, case, truth, close)
    s = row["scale"]
    if math.isfinite(s) and abs(s + 1) < 1e-3 and close(-g, t):
        out.append("sign flipped: the gradient is −1× the truth (y − a instead of a − y?)")
    elif math.isfinite(s) and s != 0 and abs(s - 1) > 1e-3 and close(g / s, t):
        why = [text for f, text in _factors(case) if abs(s / f - 1) < 1e-3]
        if why or (not specific and g.size > 1):
            out.append(f"gradient is {s:.3g}× the truth: " + (" or ".join(why) if why else "right direction, "
                       "wrong scale: a constant factor in the loss derivative or a reduction?"))
    return out + specific


# Formulas with absolute rather than relative accuracy: each returns exactly 0 (or garbage) once its
# true value falls below ~u times the O(1) terms it is computed from.
ABSOLUTE_FORMS = {
    "sigmoid": "sigma as 1/2 + 1/2 tanh(z/2), or as 1 - sigma(-z); use e^z / (1 + e^z) for z < 0",
    "softplus": "log(1 + e^z) or softplus' as 1 - e^-a; use log1p(e^z) and sigma(z)",
    "silu": "a sigmoid with absolute accuracy inside z sigma(z); use e^z / (1 + e^z) for z < 0",
    "elu": "e^z - 1 near 0; use expm1",
    "gelu": "1/2 (1 + erf(z / sqrt 2)) for z << 0; use 1/2 erfc(-z / sqrt 2)",
    "gelu_tanh": "1/2 (1 + tanh(v)) for z << 0; 1 + tanh(v) = 2 / (1 + e^-2v)",
    "tanh": "tanh' as 1 - t^2 from the output; 1 / cosh(z)^2 keeps its relative accuracy",
}


def _absolute_accuracy_hint(row, lost, t):
    form = ABSOLUTE_FORMS.get(row["activation"] or "", "a difference of two nearly equal O(1) numbers")
    return (f"exactly 0 at {int(lost.sum())} of {lost.size} entries where the truth is tiny but not 0 "
            f"(largest {float(np.max(np.abs(t[lost]))):.3g}): an underflow of a formula with absolute, not "
            f"relative, accuracy -- {form}")


def _non_finite_hint(row, g, case):
    """What a NaN or infinity most likely is, by where it shows."""
    loss = case.spec["loss"]
    if row["tensor"] == "loss" and np.all(np.isinf(g)) and loss == "softmax_cross_entropy":
        return ("the loss is infinite where the truth is finite: the log of a softmax probability that "
                "underflowed to 0 (log(p) of p = e^(z - max) / sum, or a row shifted by another row's max); "
                "use the log-sum-exp form, -log softmax(z)_y = m + log sum_j e^(z_j - m) - z_y, m the row's max")
    if row["tensor"] == "loss" and np.all(np.isinf(g)) and loss == "bce_with_logits":
        return ("the loss is infinite where the truth is finite: log(sigma(z)) or log(1 + e^-z) past exp's "
                "range; use max(z, 0) - z y + log1p(e^-|z|) (np.logaddexp)")
    if row["tensor"] == "loss" and np.all(np.isinf(g)) and loss == "binary_cross_entropy":
        return ("the loss is infinite where the truth is finite: log(a) or log(1 - a) of a sigmoid output "
                "that rounded to 0 or 1; read log a = -softplus(-z) from the logits (bce_with_logits)")
    return "NaN or infinity in the result: an overflow (exp of a large z?) or 0/0"


def _kink_hint(row, g, t, u, case, truth):
    if one_sided(row["activation"]) is None:
        return []
    z = np.asarray(truth["pre_activations"][f"layers.{row['layer']}"], np.float64)
    near = z == 0
    if not near.any():
        return []
    scale = max(float(np.max(np.abs(t), initial=0.0)), np.finfo(np.float64).tiny)
    wrong = np.abs(g - t) / scale / u > row["tol_u"]
    near = {"delta": near, "b": near.any(axis=0), "W": near.any(axis=0)[:, None]}[row["tensor"]]
    if wrong.any() and not (wrong & ~near).any():
        return [f"only wrong where z = 0 ({int(wrong.sum())} of {wrong.size} entries): the derivative at the kink "
                "(any value between the one-sided derivatives is a subgradient; NaN is not)"]
    return []


def _bp2_hints(row, g, case, truth, close):
    """BP1/BP2 slips rebuilt from the truth with the records: the activation's VJP read at the
    layer's output a where its input z belongs, and the VJP left out (the upstream gradient
    dC/da passed through). dC/da is the records' walk at the exact activations and derivatives."""
    i, layers = row["layer"], case.spec["layers"]
    name, last = layers[i]["activation"], i == len(layers) - 1
    x, params, a, derivs = network.at_truth(case, truth)
    upstream = network.backward(case.spec, params, x, case.y, a, derivs)["upstream"][f"layers.{i}"]
    eq = "BP1" if last else "BP2"
    at_output = ops.get(name).vjp(Plain(), {"x": a[i]}, {}, {}, upstream)["x"]
    slips = {f"matches {eq} with {name}'(a) instead of {name}'(z): "
             "the derivative is evaluated at the layer's output, not its input": at_output,
             f"matches {eq} without the ⊙ f'(z) factor: the activation derivative is missing": upstream}
    return [text for text, delta in slips.items() if close(g, _as_tensor(delta, row, case, truth))]


def chain_summary(rows):
    """One line: 'loss ok | layer 1: delta ok, b ok, W ok | layer 0: delta WRONG, ... | input_grad ok'."""
    segments = []
    for r in chain_order(rows):
        mark = "ok" if r["class"] == "pass" else ("WRONG" if r["class"] in REAL else r["class"])
        if r["tensor"] in _TENSORS and segments and segments[-1][0] == r["layer"]:
            segments[-1][1].append(f"{r['tensor']} {mark}")
        elif r["tensor"] in _TENSORS:
            segments.append((r["layer"], [f"layer {r['layer']}: {r['tensor']} {mark}"]))
        else:
            label = r["tensor"] if r["layer"] is None else f"layer {r['layer']} activation"
            segments.append((None, [f"{label} {mark}"]))
    return " | ".join(", ".join(items) for _, items in segments)


@dataclass
class Diagnosis:
    case: object
    rows: list
    first: dict = None
    hints: list = field(default_factory=list)
    look_at: str = ""
    findings: list = field(default_factory=list)
    inferred: str = ""
    explain: list = field(default_factory=list)     # source lines run only by failing cases

    @property
    def layer(self):
        return None if self.first is None else self.first["layer"]

    def text(self):
        lines = [f"  {f['class']}: {f['message']}" for f in self.findings if f["class"] in REAL]
        if self.first is None:
            return "\n".join(["Found in the contract:"] + lines) if lines else "no failing tensor"
        head = ["First wrong link, walking the chain rule (forward, then back from the loss):",
                "  " + chain_summary(self.rows)]
        if self.inferred:
            head.append(f"  {self.inferred}")
        head.append("  " + describe(self.first).replace("\n", "\n  "))
        head += [f"  hint: {h}" for h in self.hints]
        head.append(f"  look at: {self.look_at}")
        if self.explain:
            head.append("  lines run by the failing case and by no passing case (explain):")
            head += [f"    {line}" for line in self.explain[:8]]
        if lines:
            head += ["Also found:"] + lines
        return "\n".join(head)


def _inferred_delta(first, rows):
    """When the result has no deltas and both dC/db and dC/dW of a layer are wrong, delta itself is
    (BP3 and BP4 both read it): name BP1/BP2, not BP3/BP4."""
    if first["tensor"] not in ("b", "W") or any(r["layer"] == first["layer"] and r["tensor"] == "delta"
                                               for r in rows):
        return None
    other = "W" if first["tensor"] == "b" else "b"
    if any(r["layer"] == first["layer"] and r["tensor"] == other and r["class"] in REAL for r in rows):
        return {**first, "tensor": "delta"}
    return None


def diagnose(case, result, truth, rows, findings=()):
    """The Diagnosis of one judged case (``rows`` from ``compare`` on ``result``)."""
    first = first_divergence(rows)
    findings = list(findings)
    if first is None or first["class"] not in REAL:
        return Diagnosis(case, rows, findings=findings) if not findings or first is None else \
            Diagnosis(case, rows, first, hints(first, result, truth, case), look_at(first, rows), findings)
    delta = _inferred_delta(first, rows)
    if delta is not None:
        return Diagnosis(case, rows, first, hints(first, result, truth, case), look_at(delta, rows), findings,
                         inferred=f"delta_{first['layer']} is not in the result, but dC/db_{first['layer']} and "
                                  f"dC/dW_{first['layer']} are both wrong, and both are built from it: "
                                  "delta is the first wrong link")
    return Diagnosis(case, rows, first, hints(first, result, truth, case), look_at(first, rows), findings)
