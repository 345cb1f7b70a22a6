"""Today's dense spec as a graph of op records (``bpcheck.ops.graph``), and its truth from the records.

``compile_spec(spec)`` turns ``{"input_dim", "layers": [{"units", "activation"}], "loss", "dtype"}`` into a
``Graph``: per layer i a ``transpose`` of the spec's W (units, fan-in) into the affine record's w, an
``affine`` node ``layers.i.z`` (the pre-activation) and an activation node ``layers.i.a``; then the loss
node (``softmax_cross_entropy`` is the catalog's ``softmax_loss``) against the constant y. Leaves: the
input x and the parameters ``layers.i.W``, ``layers.i.b`` under the spec's names. ``truth`` is the
graph's certified truth there: the loss, every parameter gradient and the input gradient (the chain's
deltas are the graph's ``delta layers.i.z``). The dense path keeps its own hand-written arbiter
(``oracles.arb_oracle``); the records reproduce it (tests/test_op_network.py).
"""
import numpy as np

from bpcheck import ops
from bpcheck.ops.graph import Graph, truth as graph_truth

__all__ = ["compile_spec", "truth", "LOSS_OPS"]

LOSS_OPS = {"softmax_cross_entropy": "softmax_loss"}


def _node(name, op, hyper=None, **inputs):
    return {"name": name, "op": op, "inputs": inputs, "hyper": hyper or {}}


def compile_spec(spec):
    """The ``Graph`` of a dense spec (GraphError for an activation or loss the catalog lacks)."""
    nodes, params, previous = [], [], "x"
    for i, layer in enumerate(spec["layers"]):
        w, b, wt = f"layers.{i}.W", f"layers.{i}.b", f"layers.{i}.WT"
        params += [w, b]
        nodes += [_node(wt, "transpose", {"axes": [1, 0]}, x=w),
                  _node(f"layers.{i}.z", "affine", x=previous, w=wt, b=b),
                  _node(f"layers.{i}.a", layer["activation"], x=f"layers.{i}.z")]
        previous = f"layers.{i}.a"
    loss = LOSS_OPS.get(spec["loss"], spec["loss"])
    record = ops.get(loss)
    nodes.append(_node("loss", loss, **{record.inputs[0]: previous, record.constants[0]: "y"}))
    return Graph.from_json({"inputs": ["x"], "params": params, "constants": ["y"], "nodes": nodes, "output": "loss"})


def truth(graph, params, x, y):
    """{"loss", "grads": {param: float64 array}, "input_grad", "bits"}: the certified truth of the
    compiled spec (``bpcheck.ops.graph.truth``, cotangent 1). ArithmeticError past its precision cap."""
    t = graph_truth(graph, {"x": np.asarray(x), **{k: np.asarray(v) for k, v in params.items()}},
                    {"y": np.asarray(y)}, np.asarray(1.0))
    return {"loss": float(t["out"]), "grads": {k: t["d" + k] for k in graph.params}, "input_grad": t["dx"],
            "bits": t["bits"]}
