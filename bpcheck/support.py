"""What an implementation supports, asked before a run: so that every drawn case can be checked.

A program's hello line says it (``--exec``). A Python function says it by
raising NotImplementedError, so ``probe`` asks with tiny fixed cases, one
feature at a time from a base that works: each dtype, each loss (with the last
activation it needs), each activation (as a hidden layer under a supported
loss) -- about twenty calls. A feature whose probe is declined is left out of
the run; an error in a probe is not a "no" (the run will show the error).
"""
import numpy as np

from bpcheck.backends import AdapterError, Unsupported
from bpcheck.generate import Support
from bpcheck.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case, param_shapes

PREFERRED = ("identity", "tanh", "relu", "sigmoid", "leaky_relu", "softplus", "silu", "elu", "gelu_tanh", "gelu")


def probe_case(loss, dtype, hidden=None, last=None):
    """A tiny fixed case: optional hidden layer of 3 units, an output layer, batch 2, input 2."""
    out_units = 2
    last = LAST_ACTIVATION.get(loss, last or "identity")
    layers = ([{"units": 3, "activation": hidden}] if hidden else []) + [{"units": out_units, "activation": last}]
    spec = {"input_dim": 2, "layers": layers, "loss": loss, "dtype": dtype}
    rng = np.random.default_rng(7)
    params = {k: rng.uniform(-0.5, 0.5, s).astype(dtype) for k, s in param_shapes(spec).items()}
    x = rng.uniform(-1, 1, (2, 2)).astype(dtype)
    if loss == "softmax_cross_entropy":
        y = np.array([0, 1], dtype=np.int64)
    elif loss in ("binary_cross_entropy", "bce_with_logits"):
        y = rng.uniform(0, 1, (2, out_units)).astype(dtype)
    else:
        y = rng.uniform(-1, 1, (2, out_units)).astype(dtype)
    return Case(spec, params, x, y, id=f"probe-{loss}-{hidden or last}-{dtype}")


def _answer(backend, case):
    """None if it ran (or failed: not a refusal), else the refusal's message."""
    try:
        backend.run(case)
    except Unsupported as exc:
        return str(exc)
    except (AdapterError, Exception):
        return None
    return None


def probe(backend, *, losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES):
    """The ``Support`` of ``backend`` among the features asked for."""
    hello = getattr(backend, "hello", None) or {}
    if hello.get("activations") is not None and "bpcheck.pyworker" not in " ".join(getattr(backend, "argv", [])):
        declined = {f"activation {a}": "not in its hello line" for a in activations if a not in hello["activations"]}
        declined.update({f"loss {l}": "not in its hello line" for l in losses if l not in hello["losses"]})
        declined.update({f"dtype {d}": "not in its hello line" for d in dtypes if d not in hello["dtypes"]})
        return Support(tuple(a for a in activations if a in hello["activations"]),
                       tuple(l for l in losses if l in hello["losses"]),
                       tuple(d for d in dtypes if d in hello["dtypes"]), declined)
    base = None
    for dtype in dtypes:
        for loss in losses:
            for last in PREFERRED:
                if _answer(backend, probe_case(loss, dtype, last=last)) is None:
                    base = (loss, dtype, LAST_ACTIVATION.get(loss, last))
                    break
            if base:
                break
        if base:
            break
    if base is None:
        return Support((), (), (), {"everything": "every probe case was declined"})
    loss0, dtype0, last0 = base
    declined, ok = {}, {"dtypes": [], "losses": [], "activations": []}
    for dtype in dtypes:
        why = None if dtype == dtype0 else _answer(backend, probe_case(loss0, dtype, last=last0))
        ok["dtypes"].append(dtype) if why is None else declined.setdefault(f"dtype {dtype}", why)
    for loss in losses:
        why = None if loss == loss0 else _answer(backend, probe_case(loss, dtype0, last=last0))
        ok["losses"].append(loss) if why is None else declined.setdefault(f"loss {loss}", why)
    for act in activations:
        why = _answer(backend, probe_case(loss0, dtype0, hidden=act, last=last0))
        ok["activations"].append(act) if why is None else declined.setdefault(f"activation {act}", why)
    return Support(tuple(ok["activations"]), tuple(ok["losses"]), tuple(ok["dtypes"]), declined)
