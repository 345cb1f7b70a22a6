"""Ways in for a whole network: a Python function with the graph contract, the records, the frameworks.

``python_candidate(fn)``: ``fn(values, constants, hyper, dout)`` returns ``(out, grads)``,
``(out, grads, deltas)``, ``(out, grads, deltas, outputs)`` or a dict with those keys: ``grads``
{leaf: dC/dleaf}, ``deltas`` {node: dC/d(node output)}, ``outputs`` {node: its forward value}. With
``outputs`` and ``deltas`` for every node, each node is also judged on its own
(``bpcheck.opcheck.graph_local``). ``record_candidate`` computes the graph from the records in float64
(rounded to the case's dtype), optionally with one node's record slip; ``framework_candidate``
composes each node's torch or JAX binding and differentiates with the framework.
"""
import numpy as np

from bpcheck import ops
from bpcheck.ops.algebra import Plain
from bpcheck.opcheck.candidates import Unsupported
from bpcheck.ops.graph import framework_forward
from bpcheck.opcheck.protocol import graph_program

__all__ = ["GraphCandidate", "python_candidate", "record_candidate", "framework_candidate", "framework_limit",
           "program_candidate"]


def _float64(v, what):
    if v is None:
        return None
    if hasattr(v, "detach"):
        v = v.detach().cpu().double().numpy()
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not an array of numbers ({exc})") from None


class GraphCandidate:
    """``run(case) -> {"out", "grads", "deltas", "outputs", "mutated"}`` (float64 arrays); raises what the
    code raises. ``close()`` releases what it holds (a running program)."""

    def __init__(self, name, run, close=None):
        self.name, self.run, self._close = name, run, close

    def close(self):
        if self._close is not None:
            self._close()


def program_candidate(command, *, timeout=30.0):
    """A program in any language speaking ``bpcheck-op/1`` with graph requests (``bpcheck.opcheck.protocol``)."""
    name, call, close = graph_program(command, timeout=timeout)

    def run(case):
        return {**call(case), "mutated": []}
    return GraphCandidate(name, run, close)


def python_candidate(fn, name=None):
    """``fn(values, constants, hyper, dout) -> (out, grads)`` or ``(out, grads, deltas)`` (or a dict with
    those keys), called on fresh copies of the case's arrays; inputs it overwrites are named."""
    def run(case):
        values = {k: v.copy() for k, v in case.values.items()}
        constants = {k: v.copy() for k, v in case.constants.items()}
        with np.errstate(all="ignore"):
            result = fn(values, constants, case.hyper, np.asarray(case.cotangent).copy())
        given = {**case.values, **case.constants}
        mutated = [k for k, v in {**values, **constants}.items() if not np.array_equal(v, given[k], equal_nan=True)]
        return {**_unpack(result), "mutated": mutated}
    return GraphCandidate(name or getattr(fn, "__name__", "candidate"), run)


KEYS = ("out", "grads", "deltas", "outputs")


def _unpack(result):
    if isinstance(result, dict):
        parts = [result.get(k) for k in KEYS]
    elif isinstance(result, tuple) and 2 <= len(result) <= 4:
        parts = list(result) + [None] * (4 - len(result))
    else:
        raise TypeError("return (out, grads), (out, grads, deltas) or (out, grads, deltas, outputs)")
    out, grads, deltas, outputs = parts[0], parts[1], parts[2] or {}, parts[3] or {}
    if not all(isinstance(d, dict) for d in (grads, deltas, outputs)):
        raise TypeError("grads, deltas and outputs must be dicts keyed by leaf and node names")
    return {"out": _float64(out, "out"), "grads": {k: _float64(g, "d" + k) for k, g in grads.items()},
            "deltas": {k: _float64(d, f"delta {k}") for k, d in deltas.items()},
            "outputs": {k: _float64(o, k) for k, o in outputs.items()}}


def record_candidate(slip=None):
    """A correct candidate from the records themselves, node by node as a network in the case's dtype
    runs: each node's output, each part and each sum is computed in float64 from the dtype values it
    reads and rounded to the dtype. ``slip = (node, slip name)`` swaps that node's record slip into its
    backward: a known-bad input whose wrong node is known."""
    def run(case):
        ns, graph = Plain(), case.graph

        def rounded(v):
            return np.asarray(np.asarray(v, dtype=np.float64).astype(case.dtype), dtype=np.float64)

        env = {k: rounded(v) for k, v in case.values.items()}
        calls = []
        for n in graph.nodes:
            record = ops.get(n.op)
            a = {k: ns.input(env[v]) for k, v in n.inputs.items() if k in record.inputs}
            c = {k: np.asarray(case.constants[v]) for k, v in n.inputs.items() if k in record.constants}
            env[n.name] = rounded(record.forward(ns, a, c, n.hyper))
            calls.append((n, record, a, c))
        deltas, parts = {graph.output: rounded(case.cotangent)}, {}
        for n, record, a, c in reversed(calls):
            if n.name != graph.output:
                deltas[n.name] = rounded(sum(parts[n.name]))
            local = record.vjp(ns, a, c, n.hyper, ns.input(deltas[n.name]))
            if slip is not None and slip[0] == n.name:
                local = {**local, **next(x for x in record.slips if x.name == slip[1]).vjp(
                    ns, a, c, n.hyper, ns.input(deltas[n.name]))}
            for k in record.inputs:
                parts.setdefault(n.inputs[k], []).append(rounded(np.reshape(local[k], np.shape(a[k]))))
        return {"out": env[graph.output], "grads": {k: rounded(sum(parts[k])) for k in graph.leaves},
                "deltas": deltas, "outputs": {n.name: env[n.name] for n in graph.nodes}, "mutated": []}
    return GraphCandidate("records" + (f" with slip {slip[1]} at {slip[0]}" if slip else ""), run)


def framework_limit(case, framework):
    """Why ``framework``'s built-ins refuse ``case`` (a node's record ``limits``, asked at that node's
    inputs as the records compute them), or None."""
    env = None
    for n in case.graph.nodes:
        record = ops.get(n.op)
        limit = dict(record.limits).get(framework)
        if limit is None:
            continue
        env = env or {**case.values, **record_candidate().run(case)["outputs"]}
        a = {k: np.asarray(env[v]).astype(case.dtype) for k, v in n.inputs.items() if k in record.inputs}
        c = {k: case.constants[v] for k, v in n.inputs.items() if k in record.constants}
        reason = limit(a, c, n.hyper)
        if reason:
            return f"node {n.name} ({n.op}): {reason}"
    return None


def framework_candidate(framework):
    """The whole graph built from each node's framework binding, differentiated by the framework
    (torch: ``torch.autograd.grad``; jax: ``jax.vjp``): the frameworks' own built-ins composed, the oracles.
    A case one of them documents it refuses (``framework_limit``) raises ``Unsupported``: declined."""
    def run(case):
        graph, dout = case.graph, case.cotangent
        reason = framework_limit(case, framework)
        if reason:
            raise Unsupported(f"{framework}: {reason}")
        if framework == "torch":
            import torch
            leaves = {k: torch.tensor(v, requires_grad=True) for k, v in case.values.items()}
            constants = {k: torch.tensor(v) for k, v in case.constants.items()}
            out = framework_forward(graph, torch, leaves, constants)[graph.output]
            grads = torch.autograd.grad(out, list(leaves.values()), torch.tensor(dout, dtype=out.dtype))
            return {**_unpack((out, dict(zip(leaves, grads)))), "mutated": []}
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.nn  # noqa: F401
        names = list(case.values)
        c = {k: jax.numpy.asarray(v) for k, v in case.constants.items()}
        out, pullback = jax.vjp(lambda *xs: framework_forward(graph, jax, dict(zip(names, xs)), c)[graph.output],
                                *[jax.numpy.asarray(case.values[k]) for k in names])
        grads = pullback(jax.numpy.asarray(dout).astype(out.dtype))
        return {**_unpack((np.asarray(out), {k: np.asarray(g) for k, g in zip(names, grads)})), "mutated": []}
    return GraphCandidate(f"{framework} built-ins", run)
