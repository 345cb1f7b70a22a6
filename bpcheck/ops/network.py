"""A network as a chain of op nodes (the IR), today's dense spec compiled to it, and one generic walker.

``compile_spec(spec)`` turns ``{"input_dim", "layers": [{"units", "activation"}], "loss", "dtype"}``
into nodes: per layer an ``affine`` node (its w is the spec's W transposed, its b the spec's b) and an
activation node, then the loss node (``softmax_cross_entropy`` is the catalog's ``softmax_loss``).
``walk(nodes, params, x, y, ns)`` runs the chain rule over any such chain with each node's record:
forward through ``record.forward``, backward through ``record.vjp`` from the loss's cotangent 1, in
any reading of ``bpcheck.ops.algebra`` (balls, the rounding model, float64). It returns the loss, the
parameter gradients under the spec's names, the input gradient, and each node's output and output
cotangent (for the dense chain: the pre-activations z, activations a and deltas dC/dz by layer).
The dense path keeps its own hand-written arbiter (``oracles.arb_oracle``); the walker reproduces it
from the records (tests/ops/test_network.py), the ground on which graphs are built.
"""
from dataclasses import dataclass, field

import numpy as np
from flint import ctx

from bpcheck import ops
from bpcheck.ops.algebra import Exact
from bpcheck.ops.exact import MAX_BITS, START_BITS, certified

__all__ = ["Node", "compile_spec", "walk", "truth", "LOSS_OPS"]

LOSS_OPS = {"softmax_cross_entropy": "softmax_loss"}


@dataclass(frozen=True)
class Node:
    """One op applied to the previous node's output. ``params`` maps the record's input names to
    (parameter key, transposed?); ``label`` names the node in results ("layers.0" for a dense layer)."""
    op: str
    label: str
    params: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)


def compile_spec(spec):
    """The node chain of a dense spec (raises ValueError for an op the catalog lacks)."""
    nodes = []
    for i, layer in enumerate(spec["layers"]):
        nodes.append(Node("affine", f"layers.{i}", {"w": (f"layers.{i}.W", True), "b": (f"layers.{i}.b", False)}))
        nodes.append(Node(layer["activation"], f"layers.{i}"))
    nodes.append(Node(LOSS_OPS.get(spec["loss"], spec["loss"]), "loss"))
    for node in nodes:
        ops.get(node.op)
    return nodes


def _param(ns, params, key, transposed):
    value = np.asarray(params[key])
    return ns.input(value.T if transposed else value)


def walk(nodes, params, x, y, ns):
    """{"loss", "grads": {param key}, "input_grad", "outputs": [per node], "cotangents": [per node]}."""
    values, inputs = [ns.input(x)], []
    for node in nodes:
        record = ops.get(node.op)
        a = {record.inputs[0]: values[-1]}
        a.update({name: _param(ns, params, key, t) for name, (key, t) in node.params.items()})
        c = {record.constants[0]: np.asarray(y)} if record.constants else {}
        inputs.append((record, a, c))
        values.append(record.forward(ns, a, c, node.hyper))
    grads, cotangents = {}, [None] * len(nodes)
    g = ns.input(np.asarray(1.0))
    for k in range(len(nodes) - 1, -1, -1):
        record, a, c = inputs[k]
        cotangents[k] = g
        local = record.vjp(ns, a, c, nodes[k].hyper, g)
        for name, (key, transposed) in nodes[k].params.items():
            grads[key] = local[name].T if transposed else local[name]
        g = local[record.inputs[0]]
    return {"loss": values[-1], "grads": grads, "input_grad": g, "outputs": values[1:], "cotangents": cotangents}


def _certified(ball):
    mid, rad = np.asarray(Exact.mid(ball), dtype=np.float64), np.asarray(Exact.rad(ball), dtype=np.float64)
    return bool(np.all(np.isfinite(mid))) and certified(mid, rad), mid


def truth(nodes, params, x, y):
    """{"loss", "grads", "input_grad"} in float64 from the walker in balls, the precision doubled until
    every entry is good to 2^-62 of its size (a saturated sigmoid before a BCE needs ~1,100 bits: the
    records compose, so 1 - a is computed as written, not as sigma(-z)). ArithmeticError past MAX_BITS."""
    bits = START_BITS
    while bits <= MAX_BITS:
        with ctx.workprec(bits):
            r = walk(nodes, params, x, y, Exact(bits))
            checked = {"loss": _certified(r["loss"]), "input_grad": _certified(r["input_grad"]),
                       **{k: _certified(v) for k, v in r["grads"].items()}}
        if all(ok for ok, _ in checked.values()):
            return {"loss": float(checked.pop("loss")[1]), "input_grad": checked.pop("input_grad")[1],
                    "grads": {k: mid for k, (_, mid) in checked.items()}, "bits": bits}
        bits *= 2
    raise ArithmeticError(f"the walker needs more than {MAX_BITS} bits")
