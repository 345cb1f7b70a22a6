"""Today's dense spec as a graph of op records (``bpcheck.ops.graph``), and its truth from the records.

``compile_spec(spec)`` turns ``{"input_dim", "layers": [{"units", "activation"}], "loss", "dtype"}`` into a
``Graph``: per layer i a ``transpose`` of the spec's W (units, fan-in) into the affine record's w, an
``affine`` node ``layers.i.z`` (the pre-activation) and an activation node ``layers.i.a``; then the loss
node (``softmax_cross_entropy`` is the catalog's ``softmax_loss``) against the constant y. Leaves: the
input x and the parameters ``layers.i.W``, ``layers.i.b`` under the spec's names. ``truth`` is the
graph's certified truth there: the loss, every parameter gradient and the input gradient (the chain's
deltas are the graph's ``delta layers.i.z``). The dense path keeps its own hand-written arbiter
(``oracles.arb_oracle``), an independent writing the records reproduce (tests/test_op_network.py).

Everything else that walks the dense chain walks this graph: the torch oracle composes the records'
torch bindings over it (``bpcheck.ops.graph.framework_forward``); ``backward`` runs BP1-BP4 in
float64 with each layer's activation derivative given (``at_truth``: at the exact values), which the
classifier reads for the other side of a kink and a convention's reach, and the diagnosis for the
upstream gradient of its BP1/BP2 hints.
"""
from dataclasses import replace
from functools import lru_cache

import numpy as np

from bpcheck import ops
from bpcheck.ops.algebra import Plain
from bpcheck.ops.graph import Graph, truth as graph_truth, walk

__all__ = ["compile_spec", "truth", "at_truth", "backward", "affine", "activate", "LOSS_OPS"]

LOSS_OPS = {"softmax_cross_entropy": "softmax_loss"}


def _node(name, op, hyper=None, **inputs):
    return {"name": name, "op": op, "inputs": inputs, "hyper": hyper or {}}


def compile_spec(spec):
    """The ``Graph`` of a dense spec (GraphError for an activation or loss the catalog lacks). It depends
    on the layers' activations and the loss only (not on widths or dtype), and is built once for each."""
    return _compiled(tuple(layer["activation"] for layer in spec["layers"]), spec["loss"])


@lru_cache(maxsize=512)
def _compiled(activations, loss):
    nodes, params, previous = [], [], "x"
    for i, activation in enumerate(activations):
        w, b, wt = f"layers.{i}.W", f"layers.{i}.b", f"layers.{i}.WT"
        params += [w, b]
        nodes += [_node(wt, "transpose", {"axes": [1, 0]}, x=w),
                  _node(f"layers.{i}.z", "affine", x=previous, w=wt, b=b),
                  _node(f"layers.{i}.a", activation, x=f"layers.{i}.z")]
        previous = f"layers.{i}.a"
    loss = LOSS_OPS.get(loss, loss)
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


def _given(record, out, derivative):
    """``record`` reading a given output and derivative: forward ``out``, VJP dout * ``derivative``."""
    return replace(record, forward=lambda ns, a, c, h: ns.const(out),
                   vjp=lambda ns, a, c, h, dout: {"x": dout * ns.const(derivative)})


def _seeded(record, seed):
    """``record`` (a loss) whose VJP is the given cotangent ``seed`` of its input, whatever reaches it."""
    return replace(record, forward=lambda ns, a, c, h: ns.const(0.0),
                   vjp=lambda ns, a, c, h, dout: {record.inputs[0]: ns.const(seed)})


def backward(spec, params, x, y, activations, derivatives, seed=None):
    """BP1-BP4 in float64 over the compiled spec with each layer's activation output and derivative
    given, not evaluated: the generic walker (``bpcheck.ops.graph.walk``) with the affine and transpose
    records' VJPs, the activation nodes reading ``activations[i]`` and ``derivatives[i]`` (float64,
    (B, units_i)), so a derivative can be chosen (the other side of a kink) or replaced (its
    magnitude). The last activation's cotangent is the loss record's dC/da at ``activations[-1]``
    against ``y``, or ``seed`` where given. Returns {"deltas": {"layers.i": dC/dz_i}, "upstream":
    {"layers.i": dC/da_i}, "grads": {param: gradient}, "input_grad": dC/dx}, float64 arrays."""
    graph = compile_spec(spec)
    swap = {f"layers.{i}.a": _given(ops.get(layer["activation"]), activations[i], derivatives[i])
            for i, layer in enumerate(spec["layers"])}
    if seed is not None:
        swap["loss"] = _seeded(ops.get(graph.nodes[-1].op), seed)
    with np.errstate(all="ignore"):          # the affine outputs are computed, never read
        w = walk(graph, {"x": x, **params}, {"y": y}, np.asarray(1.0), Plain(), swap=swap)
    c = w["cotangents"]
    names = [f"layers.{i}" for i in range(len(spec["layers"]))]
    return {"deltas": {n: c[f"{n}.z"] for n in names}, "upstream": {n: c[f"{n}.a"] for n in names},
            "grads": {k: c[k] for k in params}, "input_grad": c["x"]}


def at_truth(case, truth):
    """``(x, params, a, f'(z))`` in float64 from a dense case and its exact values (``truth`` holds
    "activations" and "pre_activations" keyed "layers.i"): a[i] is layer i's activation and f'(z_i)
    the activation record's derivative at the exact z_i, the arguments ``backward`` reads."""
    n = len(case.spec["layers"])
    z = [np.asarray(truth["pre_activations"][f"layers.{i}"], np.float64) for i in range(n)]
    return (np.asarray(case.x, np.float64), {k: np.asarray(v, np.float64) for k, v in case.params.items()},
            [np.asarray(truth["activations"][f"layers.{i}"], np.float64) for i in range(n)],
            [Plain().activation(layer["activation"], z[i])[1] for i, layer in enumerate(case.spec["layers"])])


def affine(a, W, b):
    """A dense layer's pre-activation z = a W^T + b (a (B, fan-in), W (units, fan-in), b (units,)): the
    affine record's forward in plain NumPy arithmetic (the arrays' own dtype)."""
    return ops.get("affine").forward(Plain(), {"x": a, "w": W.T, "b": b}, {}, {})


def activate(name, z):
    """f(z) for the activation record ``name``, in float64."""
    return ops.get(name).forward(Plain(), {"x": z}, {}, {})
