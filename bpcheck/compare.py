"""Compare a candidate's Result with the truth, tensor by tensor, with derived tolerances.

For every (layer, tensor) -- W, b, delta, activation, the input gradient and the
loss -- the metrics of DESIGN.md are computed against the high-precision truth:

    err_u   = ||g - g*|| / max(||g*||, u^0.5 ||terms||, tiny) / u
                                                       normwise relative error in units of u
                                                       (||terms||: see term_scales; tiny: the
                                                       dtype's smallest normal number)
    scale   = <g, g*> / <g*, g*>                       2.0 means "sum instead of mean?"
    max_abs = max |g - g*| / ||g*||_inf
    cosine  = <g, g*> / (||g|| ||g*||)

u is the unit roundoff of the case's dtype (float32 2^-24, float64 2^-53).

The tolerance is derived, not guessed: the framework oracles (torch and jax) run
the same case in the same dtype, their own errors against the same truth are
measured, and the candidate passes when

    err_u <= ALPHA * max(oracle err_u) + FLOOR_U * kappa

where kappa = ||terms|| / ||g*|| (at least 1) is the condition number of the sum
behind the tensor: under cancellation, rounding that is a few u of the terms is
many u of the result, and a framework can be exact there by luck. An oracle whose own error exceeds that bound computed from the other oracle is
in *oracle disagreement* and is left out of the bound (the truth settles who is
right). A failing row is then classified: kink, convention, precision or bug.
"""
import math

import numpy as np

from bpcheck.spec import KINKED

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}

# One table; each number with the reason it has this value.
TOLERANCE = {
    "alpha": (10.0, "a correct plain NumPy backprop stays within 10x the worse framework's "
                    "error on 5,000 random cases (DESIGN.md: margin 1.5-6x)"),
    "floor_u": (32.0, "when both frameworks happen to be nearly exact, a correct implementation "
                      "that sums in another order still differs by tens of u -- of the terms: the "
                      "floor is 32 kappa u, kappa = ||terms|| / ||g*|| the condition of the sum, "
                      "because under cancellation a framework can be exact by luck"),
    "kink_kappa": (1024.0, "a ReLU input |z*| within 1024 u of the rounding scale |W||a|+|b| can "
                           "land on either side of 0 in the candidate's arithmetic"),
    "cancellation_floor": (0.5, "relative error is taken against max(||g*||, u^0.5 * ||terms||): "
                                "a truth that cancels below that is zero but for rounding"),
    "precision_rel": (0.5, "a failing tensor whose relative error is below u^0.5 has the right "
                           "formula and too little accuracy (exponent of u)"),
}
ALPHA = TOLERANCE["alpha"][0]
FLOOR_U = TOLERANCE["floor_u"][0]

ORACLES = ("torch", "jax")


def tensors(result, spec):
    """Yield ``(layer, tensor, array)`` for every comparable tensor in a result."""
    yield None, "loss", np.asarray(result["loss"], dtype=np.float64)
    for i in range(len(spec["layers"])):
        yield i, "W", result["grads"][f"layers.{i}.W"]
        yield i, "b", result["grads"][f"layers.{i}.b"]
        for kind, tensor in (("deltas", "delta"), ("activations", "activation")):
            if f"layers.{i}" in (result.get(kind) or {}):
                yield i, tensor, result[kind][f"layers.{i}"]
    if result.get("input_grad") is not None:
        yield None, "input_grad", result["input_grad"]


def lookup(result, layer, tensor):
    if tensor == "loss":
        return np.asarray(result["loss"], dtype=np.float64)
    if tensor == "input_grad":
        return result.get("input_grad")
    if tensor in ("W", "b"):
        return result["grads"][f"layers.{layer}.{tensor}"]
    kind = {"delta": "deltas", "activation": "activations"}[tensor]
    return (result.get(kind) or {}).get(f"layers.{layer}")


def metrics(g, g_star, u, terms=0.0, tiny=None):
    """Error metrics of candidate ``g`` against truth ``g_star`` (both any shape).

    ``terms`` is the norm of the absolute terms that sum to ``g_star``: when the
    truth cancels to less than u^0.5 of them (a gradient that is zero but for
    rounding), the error is measured against u^0.5 * terms instead, so that
    rounding left behind by any float evaluation is not reported as 10^30 u.
    ``tiny`` is the smallest normal number of the candidate's dtype (float64's
    if not given): a truth below it underflows in that dtype, so 0 is the right
    answer there and the error is measured against ``tiny`` instead.
    """
    g = np.asarray(g, dtype=np.float64).ravel()
    t = np.asarray(g_star, dtype=np.float64).ravel()
    norm_t = float(np.linalg.norm(t))
    if not np.all(np.isfinite(g)):
        return {"err_u": math.inf, "scale": math.nan, "max_abs": math.inf, "cosine": math.nan,
                "rel": math.inf, "kappa": 1.0}
    diff = g - t
    tiny = np.finfo(np.float64).tiny if tiny is None else tiny
    denom = max(norm_t, u ** TOLERANCE["cancellation_floor"][0] * terms, tiny)
    rel = float(np.linalg.norm(diff)) / denom
    tt = float(t @ t)
    norm_g = float(np.linalg.norm(g))
    return {
        "err_u": rel / u,
        "rel": rel,
        "kappa": max(terms / denom, 1.0),
        "scale": float(g @ t) / tt if tt > 0 else (1.0 if norm_g == 0 else math.inf),
        "max_abs": float(np.max(np.abs(diff), initial=0.0)) / max(float(np.max(np.abs(t), initial=0.0)), np.finfo(np.float64).tiny),
        "cosine": float(g @ t) / (norm_g * norm_t) if norm_g > 0 and norm_t > 0 else (1.0 if norm_g == norm_t else 0.0),
    }


def _loss_terms(spec, a, y):
    """|terms| of dC/da at the truth: c (|a| + |y|) for C = c' sum (a - y)^2 and friends."""
    B, D = a.shape
    if spec["loss"] == "softmax_cross_entropy":
        e = np.exp(a - a.max(axis=1, keepdims=True))
        onehot = np.zeros_like(a)
        onehot[np.arange(B), np.asarray(y)] = 1
        return (e / e.sum(axis=1, keepdims=True) + onehot) / B
    y = np.abs(np.asarray(y, np.float64))
    if spec["loss"] == "bce_with_logits":
        return (1 / (1 + np.exp(-a)) + y) / (B * D)
    if spec["loss"] == "binary_cross_entropy":  # (a - y) / (a (1 - a)) / n
        return (np.abs(a) + y) / np.maximum(a * (1 - a), np.finfo(np.float64).tiny) / (B * D)
    coefficient = {"sse": 2, "half_sse": 1, "mse": 2 / (B * D), "quadratic": 1 / B}[spec["loss"]]
    return coefficient * (np.abs(a) + y)


_K, _C = math.sqrt(2 / math.pi), 0.044715
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _derivative_terms(name, z, f_prime):
    """|terms| of f'(z) as float code evaluates it: 1 - tanh^2 sums 1 and tanh^2, so its
    rounding is u (1 + tanh^2), not u (1 - tanh^2). Stable forms keep |f'|."""
    if name == "tanh":
        return 1 + np.tanh(z) ** 2
    s = 1 / (1 + np.exp(-np.clip(z, -700, 700)))
    if name == "sigmoid":
        return s * (1 + s)
    if name == "silu":
        return s * (1 + np.abs(z) * (1 + s))
    if name == "gelu":
        cdf = 0.5 * np.asarray(_erfc(-z / math.sqrt(2)), dtype=np.float64)
        return cdf + np.abs(z) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    if name == "gelu_tanh":
        t = np.tanh(_K * (z + _C * z**3))
        return 0.5 * (1 + np.abs(t)) + 0.5 * np.abs(z) * (1 + t * t) * _K * (1 + 3 * _C * z * z)
    return np.abs(f_prime)


def term_scales(case, truth):
    """Norm of the absolute terms that sum to each true tensor (running error analysis).

    T_L = |dC/da terms| F_L, T_i = (T_{i+1} |W_{i+1}|) F_i (BP1 and BP2 with every term
    made positive; F_i = the terms of f'(z_i), ``_derivative_terms``); W_i: || T_i^T |a_{i-1}| ||, b_i: || sum_batch T_i ||, delta_i:
    ||T_i||, input_grad: || T_0 |W_0| ||, activation_i: || (|a_{i-1}| |W_i|^T + |b_i|) |f'_i| ||.
    terms / ||g*|| is the condition number of that sum: 1 without cancellation.
    """
    spec, n = case.spec, len(case.spec["layers"])
    W = [np.abs(np.asarray(case.params[f"layers.{i}.W"], np.float64)) for i in range(n)]
    b = [np.abs(np.asarray(case.params[f"layers.{i}.b"], np.float64)) for i in range(n)]
    a = [np.abs(np.asarray(case.x, np.float64))] + [np.abs(truth["activations"][f"layers.{i}"])
                                                     for i in range(n)]
    df = [_derivative_terms(layer["activation"], truth["pre_activations"][f"layers.{i}"],
                            truth["local_derivatives"][f"layers.{i}"])
          for i, layer in enumerate(spec["layers"])]
    T = [None] * n
    T[-1] = _loss_terms(spec, truth["activations"][f"layers.{n - 1}"], case.y) * df[-1]
    for i in reversed(range(n - 1)):
        T[i] = (T[i + 1] @ W[i + 1]) * df[i]
    norm = lambda v: float(np.linalg.norm(v))
    scales = {(None, "input_grad"): norm(T[0] @ W[0])}
    for i in range(n):
        scales[(i, "delta")] = norm(T[i])
        scales[(i, "W")] = norm(T[i].T @ a[i])
        scales[(i, "b")] = norm(T[i].sum(axis=0))
        scales[(i, "activation")] = norm((a[i] @ W[i].T + b[i]) * df[i])
    return scales


def kink_mask(case, truth, layer):
    """Entries of z_layer within rounding of the kink at 0: |z*| <= kappa u (|W| |a| + |b|),
    or z* subnormal in the case's dtype -- XLA on CPU flushes subnormals to zero, which
    puts such a z exactly on the kink."""
    u = UNIT_ROUNDOFF[case.spec["dtype"]]
    a_prev = case.x if layer == 0 else truth["activations"][f"layers.{layer - 1}"]
    W = np.asarray(case.params[f"layers.{layer}.W"], np.float64)
    b = np.asarray(case.params[f"layers.{layer}.b"], np.float64)
    scale = np.abs(np.asarray(a_prev, np.float64)) @ np.abs(W).T + np.abs(b)
    bound = np.maximum(TOLERANCE["kink_kappa"][0] * u * scale, float(np.finfo(case.spec["dtype"]).tiny))
    return np.abs(truth["pre_activations"][f"layers.{layer}"]) <= bound


def kink_layers(case, truth):
    """Layers with a kinked activation (relu, leaky_relu) that has an input near its kink."""
    return [i for i, layer in enumerate(case.spec["layers"])
            if layer["activation"] in KINKED and np.any(kink_mask(case, truth, i))]


def _affected_by_kink(layer, tensor, kinks):
    """A kink at layer j bends the gradient of every layer <= j (and the input gradient)."""
    if tensor in ("loss", "activation") or not kinks:
        return False
    return tensor == "input_grad" or any(layer <= j for j in kinks)


def classify(row, candidate_vs_oracles, kinked):
    """The class of a failing row: kink, convention, precision or bug."""
    if kinked:
        return "kink"
    if any(candidate_vs_oracles.get(o) for o in row.get("excluded_oracles", [])):
        return "convention"
    if math.isfinite(row["rel"]) and row["rel"] <= UNIT_ROUNDOFF[row["dtype"]] ** TOLERANCE["precision_rel"][0]:
        return "precision"
    return "bug"


def compare(case, candidate, truth, oracles, *, who="candidate"):
    """Rows comparing ``candidate`` with ``truth``; ``oracles`` maps torch/jax to their Result in the case dtype."""
    spec, dtype = case.spec, case.spec["dtype"]
    u = UNIT_ROUNDOFF[dtype]
    tiny = float(np.finfo(dtype).tiny)
    kinks = kink_layers(case, truth)
    scales = term_scales(case, truth)
    rows = []
    for layer, tensor, g in tensors(candidate, spec):
        t = lookup(truth, layer, tensor)
        if t is None:
            continue
        terms = scales.get((layer, tensor), 0.0)
        m = metrics(g, t, u, terms, tiny)
        oracle_err = {o: metrics(lookup(r, layer, tensor), t, u, terms, tiny)["err_u"]
                      for o, r in oracles.items() if lookup(r, layer, tensor) is not None}
        excluded = _disagreeing(oracle_err, u, m["kappa"])
        trusted = [e for o, e in oracle_err.items() if o not in excluded]
        tol = ALPHA * max(trusted, default=0.0) + FLOOR_U * m["kappa"]
        row = {
            "case": case.id, "who": who, "dtype": dtype, "loss_fn": spec["loss"],
            "depth": len(spec["layers"]), "layer": layer, "tensor": tensor,
            "activation": spec["layers"][layer]["activation"] if layer is not None else None,
            "width": spec["layers"][layer]["units"] if layer is not None else None,
            "err_u": m["err_u"], "rel": m["rel"], "tol_u": tol,
            "margin": tol / m["err_u"] if m["err_u"] > 0 else math.inf,
            "scale": m["scale"], "cosine": m["cosine"], "max_abs": m["max_abs"], "kappa": m["kappa"],
            "oracle_err_u": oracle_err, "excluded_oracles": sorted(excluded),
        }
        if m["err_u"] <= tol:
            row["class"] = "pass"
        else:
            near = {o: metrics(g, lookup(oracles[o], layer, tensor), u, terms, tiny)["err_u"] <= tol
                    for o in excluded}
            row["class"] = classify(row, near, _affected_by_kink(layer if layer is not None else -1, tensor, kinks))
            row["worst"] = worst_entries(g, t)
        rows.append(row)
    return rows


def _disagreeing(oracle_err, u, kappa=1.0):
    """Oracles to leave out of the tolerance: beyond the bound derived from the other
    one *and* off by more than rounding (relative error above u^precision_rel).

    Rounding-level disagreement (torch's exact gelu ~600 u at z = -3.5; one oracle
    exact by luck where the other leaves 10^3 u of cancellation) stays in: an honest
    float implementation may round like either. Only a formula-level difference -- a
    framework convention such as torch's clamped BCE -- is set aside.
    """
    if len(oracle_err) < 2:
        return set()
    rounding_u = u ** TOLERANCE["precision_rel"][0] / u
    out = set()
    for o, e in oracle_err.items():
        others = max(v for k, v in oracle_err.items() if k != o)
        if e > ALPHA * others + FLOOR_U * kappa and e > rounding_u:
            out.add(o)
    return out


def oracle_rows(case, truth, oracles):
    """Each framework oracle judged like a candidate against the others: their agreement, checked.

    A failing oracle row is an oracle disagreement, unless a kink explains it (class kink).
    """
    rows = []
    for name, result in oracles.items():
        others = {o: r for o, r in oracles.items() if o != name}
        for row in compare(case, result, truth, others, who=name):
            if row["class"] not in ("pass", "kink"):
                row["class"] = "oracle_disagreement"
            rows.append(row)
    return rows


def worst_entries(g, t, k=3):
    """The k entries with the largest absolute error, as (index, value, truth)."""
    g, t = np.asarray(g, dtype=np.float64), np.asarray(t, dtype=np.float64)
    diff = np.where(np.isfinite(g), np.abs(g - t), np.inf)
    order = np.argsort(diff.ravel())[::-1][:k]
    return [[list(map(int, np.unravel_index(j, g.shape))), float(g.ravel()[j]), float(t.ravel()[j])]
            for j in order]


def failures(rows):
    return [r for r in rows if r["class"] not in ("pass",)]


def where(row):
    """'layer 1 (tanh, 4 units) W' / 'input_grad' / 'loss'."""
    if row["layer"] is None:
        return row["tensor"]
    return f"layer {row['layer']} ({row['activation']}, {row['width']} units) {row['tensor']}"


def describe(row):
    """One failing row as a sentence a person can act on."""
    text = (f"{row['who']} {where(row)} [{row['dtype']}, {row['loss_fn']}]: "
            f"error {row['err_u']:.3g} u > tolerance {row['tol_u']:.3g} u "
            f"(margin {row['margin']:.2g}), class {row['class']}; "
            f"scale {row['scale']:.4g}, cosine {row['cosine']:.6f}")
    for index, got, want in row.get("worst", []):
        text += f"\n    at {index}: got {got:.17g}, truth {want:.17g}"
    return text
