"""What the generated op tests share: a candidate built from the record itself.

``record_candidate(op)`` evaluates the record's forward and VJP once in plain float64
(``bpcheck.ops.algebra.Plain``) and casts the results to the case's dtype: a correct implementation
of the definition, for any op in the registry. ``record_candidate(op, slip)`` is the same with the
tensors ``slip`` gets wrong replaced by the slip's own: a typical wrong implementation, built from
the record, whose wrong tensors are known.
"""
import numpy as np

from bpcheck.ops.algebra import Plain
from bpcheck.opcheck.candidates import Candidate

DTYPES = ("float32", "float64")


def slip_grads(op, slip, case, inputs=None):
    """{input: gradient} that ``slip`` overrides on ``case`` (float64; empty where it changes nothing)."""
    ns = Plain()
    a = {k: ns.input(v) for k, v in (case.inputs if inputs is None else inputs).items()}
    wrong = slip.vjp(ns, a, case.constants, case.hyper, ns.input(case.cotangent))
    return {k: np.asarray(v, dtype=np.float64).reshape(case.inputs[k].shape)
            for k, v in wrong.items() if k in op.inputs}


def plain_result(op, case, slip=None, inputs=None):
    """(out, {input: gradient}): the record in float64, ``slip``'s tensors swapped in, cast to the
    case's dtype."""
    ns = Plain()
    inputs = case.inputs if inputs is None else inputs
    a = {k: ns.input(v) for k, v in inputs.items()}
    out = op.forward(ns, a, case.constants, case.hyper)
    grads = op.vjp(ns, a, case.constants, case.hyper, ns.input(case.cotangent))
    grads = {k: np.asarray(grads[k], dtype=np.float64).reshape(case.inputs[k].shape) for k in op.inputs}
    if slip is not None:
        grads.update(slip_grads(op, slip, case, inputs))

    def cast(v):
        return np.asarray(np.asarray(v, dtype=np.float64).astype(case.dtype))

    return cast(out), {k: cast(g) for k, g in grads.items()}


def record_candidate(op, slip=None):
    """A Candidate computing ``op`` from its own record (with ``slip``'s wrong tensors, if given)."""
    def call(op_, case, given):
        return plain_result(op_, case, slip, {k: given[k] for k in case.inputs})

    return Candidate(f"record {op.name}" + (f" with slip {slip.name}" if slip else ""), call)


def first_bug(rows):
    """The first failing row of a judgement, or None."""
    return next((r for r in rows if r["status"] == "bug"), None)
