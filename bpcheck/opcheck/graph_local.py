"""Each node of a network judged on its own, at the candidate's own values (teacher forcing per node).

When a candidate returns every node's forward value (``outputs``) and delta (``deltas``), each node
is an op case of its own: its inputs are the values the candidate fed it (leaves as drawn, other nodes
as the candidate computed them) and its cotangent is the candidate's delta for it. Then

- the node's output is judged against the record's exact forward at those inputs, and
- each value's gradient (a leaf's ``d<leaf>``, a node's delta) against the sum, over the nodes that
  read it, of each record's exact VJP at that node's inputs and cotangent,

each with the op's own tolerance (``bpcheck.ops.exact.bound``: SAFETY u ||s|| + floor) -- plus, for a
value read by k > 1 nodes, (k - 1) u times its parts' magnitudes for their summation. A node's
judgement is the op judgement (``bpcheck.opcheck.judge.judge``, ties and kinks included), so it is as
tight as checking the op alone: the worst-case bound of a whole graph (``bpcheck.ops.graph.bound``)
grows with depth, a node's does not. It assumes what a network does: each node computed from exactly
the values reported for its inputs, in the case's dtype.
"""
from dataclasses import replace

import numpy as np

from bpcheck import ops
from bpcheck.ops.cases import OpCase
from bpcheck.ops.exact import bound, truth
from bpcheck.opcheck.judge import compare_tensor, judge

__all__ = ["judge_locally"]


def _inputs(case, node, record, outputs):
    """The arrays node ``node`` read (in the case's dtype), or None if an input node's output is missing."""
    found = {}
    for slot, value in node.inputs.items():
        if slot in record.constants:
            continue
        if value in case.values:
            found[slot] = case.values[value]
        elif value in outputs:
            found[slot] = np.asarray(outputs[value]).astype(case.dtype)
        else:
            return None
    return found


def judge_locally(case, got):
    """Rows judging each node at the candidate's own values -- the forward outputs in node order, then
    the gradients in backward order -- with "node" (or "value", for a sum) naming where, and the parts:
    {value: {"node.input": (exact part, its bound s)}}. Empty when ``got`` lacks outputs or deltas."""
    graph = case.graph
    names = [n.name for n in graph.nodes]
    outputs = {graph.output: got["out"], **got["outputs"]}
    if any(n not in outputs for n in names) or any(n not in got["deltas"] for n in names if n != graph.output):
        return [], {}
    forward, backward, parts = [], [], {}
    for node in reversed(graph.nodes):
        record = ops.get(node.op)
        inputs = _inputs(case, node, record, outputs)
        constants = {s: case.constants[v] for s, v in node.inputs.items() if s in record.constants}
        dout = case.cotangent if node.name == graph.output else got["deltas"][node.name]
        op_case = OpCase(node.op, case.dtype, case.family, case.seed, inputs, constants, dict(node.hyper),
                         np.asarray(dout).astype(case.dtype))
        t, s = truth(record, op_case), bound(record, op_case)
        grads = {}
        for slot in record.inputs:
            value = node.inputs[slot]
            parts.setdefault(value, {})[f"{node.name}.{slot}"] = (t["grads"][slot], s[slot])
            alone = len(graph.consumers(value)) == 1
            grads[slot] = _gradient(got, value, graph) if alone else t["grads"][slot]   # sums: judged below
        result = {"out": outputs[node.name], "grads": grads, "mutated": []}
        node_rows, cls = judge(record, op_case, result, t, s)
        for conv in record.conventions if cls == "bug" else ():    # a documented variant of the op
            variant = replace(record, forward=conv.forward, vjp=conv.vjp, conventions=())
            conv_rows, conv_cls = judge(variant, op_case, result, truth(variant, op_case), s)
            if conv_cls != "bug":
                for new, old in zip(conv_rows, node_rows):
                    if old["status"] == "bug":
                        new.update(status="convention", message=conv.note)
                node_rows = conv_rows
                break
        for row in node_rows:
            row["node"] = node.name
            (forward if row["tensor"] == "out" else backward).append(row)
            row["tensor"] = f"{node.name}: {row['tensor']}"
        for slot in record.inputs:               # a value read by several nodes: once its last reader is done
            value = node.inputs[slot]
            readers = graph.consumers(value)
            if len(readers) > 1 and readers[0] == (node.name, slot):
                backward.append(_sum_row(case, value, _gradient(got, value, graph), parts[value]))
    return forward[::-1] + backward, parts


def _gradient(got, value, graph):
    return got["grads"].get(value) if value in graph.leaves else got["deltas"].get(value)


def _sum_row(case, value, g, parts):
    """The candidate's gradient of a value read by k nodes against the sum of their exact parts."""
    exact = sum(p for p, _ in parts.values())
    s = sum(b for _, b in parts.values()) + (len(parts) - 1) * sum(np.abs(p) for p, _ in parts.values())
    row = compare_tensor(f"d{value} (sum of {len(parts)} parts)" if value in case.graph.leaves
                         else f"delta {value} (sum of {len(parts)} parts)", g, exact, s, case.dtype)
    row["value"] = value
    return row
