"""The attention record's edge families (``bpcheck.ops.catalog.attention``): what each region means.

The logits are recomputed here in float64 from the case alone (scale q k^T + bias over the allowed
entries: mask and, if causal, top-left causality, query i seeing keys j <= i), not with the record's code.
"""
import numpy as np


def _dims(case):
    q, k, v = (case.inputs[n] for n in ("q", "k", "v"))
    return {"B": q.shape[0], "H": q.shape[1], "G": k.shape[1], "Tq": q.shape[2], "Tk": k.shape[2],
            "D": q.shape[3], "Dv": v.shape[3]}


def allowed(case):
    """(B, H, Tq, Tk) bool: the entries a query may attend to."""
    n = _dims(case)
    shape = (n["B"], n["H"], n["Tq"], n["Tk"])
    ok = np.broadcast_to(np.asarray(case.constants["mask"], dtype=bool), shape)
    if case.hyper["causal"]:
        ok = ok & np.tril(np.ones(shape[2:], dtype=bool))
    return ok


def logits(case):
    """(B, H, Tq, Tk) float64 logits, NaN where not allowed."""
    q, k = (np.asarray(case.inputs[n], dtype=np.float64) for n in ("q", "k"))
    k = np.repeat(k, q.shape[1] // k.shape[1], axis=1)
    s = case.hyper["scale"] * q @ k.transpose(0, 1, 3, 2) + np.asarray(case.constants["bias"], dtype=np.float64)
    return np.where(allowed(case), s, np.nan)


def _peaked(case):
    """Some row whose largest logit is past exp's overflow (exp(max) is inf in the dtype) and whose
    logits span past exp's underflow once the max is subtracted."""
    s = logits(case)
    info = np.finfo(case.dtype)
    with np.errstate(invalid="ignore"):
        top, low = np.nanmax(s, axis=-1), np.nanmin(s, axis=-1)
    return bool(np.any((top >= np.log(info.max)) & (top - low >= -np.log(info.tiny))))


def _explain_peaked(op, case):
    s = logits(case)
    with np.errstate(invalid="ignore"):
        return (f"largest logit {np.nanmax(s):.4g} (exp overflows past {np.log(np.finfo(case.dtype).max):.4g}), "
                f"widest row span {np.nanmax(np.nanmax(s, -1) - np.nanmin(s, -1)):.4g}")


PREDICATES = {
    "peaked_logits": lambda op, c: _peaked(c),
    "fully_masked_row": lambda op, c: bool(np.any(~allowed(c).any(axis=-1))),
    "causal_rectangular": lambda op, c: bool(c.hyper["causal"]) and _dims(c)["Tq"] != _dims(c)["Tk"],
    "grouped_heads": lambda op, c: _dims(c)["H"] > _dims(c)["G"],
    "odd_head_dim": lambda op, c: (_dims(c)["D"] & (_dims(c)["D"] - 1)) != 0,
    "batch2": lambda op, c: _dims(c)["B"] >= 2,
    "dropout_mask": lambda op, c: c.hyper["dropout_p"] > 0 and not bool(np.all(c.constants["keep"])),
    "additive_bias": lambda op, c: bool(np.any(np.asarray(c.constants["bias"]) != 0)),
    "asymmetric_shapes": lambda op, c: len({_dims(c)[n] for n in ("Tq", "Tk", "D", "Dv")}) == 4,
}

EXPLAIN = {
    "peaked_logits": _explain_peaked,
    "asymmetric_shapes": lambda op, c: f"dims {_dims(c)}",
    "causal_rectangular": lambda op, c: f"causal {c.hyper['causal']}, dims {_dims(c)}",
}
