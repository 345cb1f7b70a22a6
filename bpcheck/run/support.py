"""What an implementation supports, asked before a run: so that every drawn case can be checked.

A program's hello line says it (``--exec``). A Python function says it by
raising NotImplementedError, so ``probe`` asks with tiny fixed cases, one
feature at a time from a base that works: each dtype, each loss (with the last
activation it needs), each activation (as a hidden layer under a supported
loss) -- about twenty calls. A feature whose probe is declined is left out of
the run; an error in a probe is not a "no" (the run will show the error). A probe
that gets no reply within the timeout is not waited on again: ``Hung`` ends the
probing at once (an implementation that hangs on a network of five units would
hang on every case).

Sizes too (``probe_size``): a network with as many parameters as the largest the
run can draw, and when that is declined, the largest accepted by a binary search
over widths; the run then draws only networks within that many parameters
(``generate.generate_cases(max_params=...)``).
"""
import time

import numpy as np

from bpcheck.run.backends import AdapterError, Unsupported
from bpcheck.cases.generate import Support
from bpcheck.cases.strategies import MAX_WIDTH
from bpcheck.core.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case, n_params, param_shapes



class Hung(AdapterError):
    """A probe case got no reply within the timeout."""

PREFERRED = ("identity", "tanh", "relu", "sigmoid", "leaky_relu", "softplus", "silu", "elu", "gelu_tanh", "gelu")


def probe_case(loss, dtype, hidden=None, last=None, *, depth=None, width=None):
    """A tiny fixed case: optional hidden layer of 3 units, an output layer, batch 2, input 2.
    With ``depth`` and ``width``: ``depth`` layers of ``width`` units (hidden ones ``hidden``, else
    the last activation), the same input and batch."""
    out_units = 2
    last = LAST_ACTIVATION.get(loss, last or "identity")
    layers = ([{"units": 3, "activation": hidden}] if hidden else []) + [{"units": out_units, "activation": last}]
    if depth:
        out_units = width
        layers = [{"units": width, "activation": hidden or last} for _ in range(depth - 1)]
        layers.append({"units": width, "activation": last})
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
    size = f"-{depth}x{width}" if depth else ""
    return Case(spec, params, x, y, id=f"probe-{loss}-{hidden or last}-{dtype}{size}")


def _answer(backend, case, retry=True):
    """None if it ran (or failed: not a refusal), else the refusal's message.
    Raises ``Hung`` when the call failed after its whole timeout twice running (the program's start
    is not timed; a first call slowed by a loaded machine or a library's lazy set-up gets a second
    try in a fresh worker, so a real hang costs two timeouts)."""
    try:
        if hasattr(backend, "start"):
            backend.start()                 # a restart after a crash is not the probe's time
    except AdapterError:
        return None
    begun = time.monotonic()
    try:
        backend.run(case)
    except Unsupported as exc:
        return str(exc)
    except Exception:  # AdapterError or a bug of the target's: not a refusal, unless it hung
        timeout = getattr(backend, "timeout", None)
        if not timeout or time.monotonic() - begun < timeout:
            return None
        if retry:
            return _answer(backend, case, retry=False)
        raise Hung(f"{getattr(backend, 'name', 'the implementation')} gave no answer within the timeout "
                   f"of {timeout:g} s to a tiny probe case ({_describe(case)}), twice running, so nothing "
                   "was run: it hangs (or is far too slow for --timeout)") from None
    return None


def _describe(case):
    layers = case.spec["layers"]
    return (f"{len(layers)} layer{'s' * (len(layers) > 1)} of {', '.join(str(l['units']) for l in layers)} "
            f"units, {case.spec['loss']}, {case.spec['dtype']}, batch {case.batch}")


def probe(backend, *, losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES):
    """The ``Support`` of ``backend`` among the features asked for. Raises ``Hung`` at the first probe
    that gets no answer within the backend's timeout."""
    hello = getattr(backend, "hello", None) or {}
    if hello.get("activations") is not None and "bpcheck.run.pyworker" not in " ".join(getattr(backend, "argv", [])):
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


def probe_size(backend, support, max_depth):
    """``(max_params, message)``: the largest network to draw, in parameters, and why; ``(None, None)``
    when the implementation takes a network as large as the largest the run draws (``max_depth``
    layers of ``MAX_WIDTH`` units), or when it takes nothing to probe with. The probes stay one or
    two layers deep, as ``probe``'s do (a target may crash on deeper ones, and in-process that
    would be bpcheck's own process); they grow in width. Declining is taken to grow with size:
    the largest width accepted is found by binary search (about 6 calls). Raises ``Hung`` as
    ``probe`` does."""
    if not support.losses or not support.dtypes or not support.activations:
        return None, None
    loss, dtype = support.losses[0], support.dtypes[0]
    last = LAST_ACTIVATION.get(loss) or ("identity" if "identity" in support.activations
                                         else support.activations[0])
    sized = lambda w: probe_case(loss, dtype, last=last, depth=min(2, max_depth), width=w)  # noqa: E731
    largest_drawn = max_depth * MAX_WIDTH * (MAX_WIDTH + 1)
    widest = next(w for w in range(2, 4097) if n_params(sized(w).spec) >= largest_drawn)
    why = _answer(backend, sized(widest))
    if why is None:
        return None, None
    declined, lo, hi = sized(widest), 1, widest        # widths lo+1..hi-1 are still open
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _answer(backend, sized(mid)) is None:
            lo = mid
        else:
            hi, declined = mid, sized(mid)
    largest = n_params(sized(lo).spec) if lo > 1 else n_params(probe_case(loss, dtype, hidden=last).spec)
    return largest, (f"declined a network of {n_params(declined.spec)} parameters "
                     f"({_describe(declined)}): {why}")
