"""A network as a graph of op records (the IR), and the chain rule over it in any reading.

A graph, as JSON (format ``bpcheck-graph/1``; ``Graph.from_json`` validates it)::

    {"format": "bpcheck-graph/1",
     "inputs": ["x"], "params": ["w1", "b1"], "constants": ["y"],
     "nodes": [{"name": "h", "op": "affine", "inputs": {"x": "x", "w": "w1", "b": "b1"}},
               {"name": "a", "op": "relu", "inputs": {"x": "h"}},
               {"name": "r", "op": "add", "inputs": {"x": "a", "y": "x"}},
               {"name": "loss", "op": "softmax_loss", "inputs": {"x": "r", "y": "y"}}],
     "output": "loss"}

``inputs`` and ``params`` are the differentiated leaves (data and weights; both get gradients),
``constants`` the rest (labels, masks, indices). A node applies the catalog record ``op`` with
``hyper``; its ``inputs`` bind each of the record's inputs and constants to a leaf, a constant or an
earlier node (nodes are listed in a topological order). A value may feed several nodes (fan-out: a
residual's skip, a tied weight): its cotangent is the sum of each consumer's part. A single op is
the one-node graph; the dense chain is affine and activation nodes ending in a loss.

``walk(graph, values, constants, cotangent, ns)`` runs the forward pass in node order and the chain
rule in reverse, from ``cotangent`` at the output, in any reading of ``bpcheck.ops.algebra``: balls
(``truth``), the rounding model (``bound``) or float64. It keeps every node's output, every value's
cotangent (the generalised delta dC/d(value)) and each consumer's part of it.
"""
import json
from dataclasses import dataclass, field
from functools import lru_cache

import jsonschema
import numpy as np
from flint import ctx

from bpcheck import ops
from bpcheck.core.spec import schema
from bpcheck.ops.algebra import Exact, Model
from bpcheck.ops.exact import MAX_BITS, START_BITS, certified

__all__ = ["Graph", "GraphNode", "GraphError", "forward", "framework_forward", "walk", "truth", "bound", "FORMAT",
           "schema_document"]

FORMAT = "bpcheck-graph/1"


class GraphError(ValueError):
    """A malformed graph: the message names the node or value and what is wrong."""


@dataclass(frozen=True)
class GraphNode:
    """One op applied to named values: ``inputs`` maps each of the record's inputs and constants to a
    value name; ``hyper`` holds the record's hyper-parameters."""
    name: str
    op: str
    inputs: dict
    hyper: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    inputs: tuple
    params: tuple
    constants: tuple
    nodes: tuple
    output: str

    @property
    def leaves(self):
        """The differentiated leaves: data inputs, then parameters."""
        return self.inputs + self.params

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def consumers(self, value):
        """[(node name, record input)] that read ``value``, in node order."""
        return [(n.name, slot) for n in self.nodes for slot, v in n.inputs.items()
                if v == value and slot in ops.get(n.op).inputs]

    def to_json(self):
        return {"format": FORMAT, "inputs": list(self.inputs), "params": list(self.params),
                "constants": list(self.constants),
                "nodes": [{"name": n.name, "op": n.op, "inputs": dict(n.inputs), "hyper": dict(n.hyper)}
                          for n in self.nodes],
                "output": self.output}

    @classmethod
    def from_json(cls, doc):
        """The graph of ``doc`` (JSON Schema ``bpcheck/schemas/graph.schema.json``, then ``validate``);
        GraphError naming the first problem found."""
        if not isinstance(doc, dict):
            raise GraphError(f"a graph is a JSON object, not {type(doc).__name__}")
        error = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
        if error is not None and error.validator != "enum":     # an unknown op: said below, with the known ones
            raise GraphError(f"{error.json_path}: {error.message[:200]}")
        if doc.get("format", FORMAT) != FORMAT:
            raise GraphError(f"format {doc.get('format')!r}; this bpcheck reads {FORMAT}")
        unknown = set(doc) - {"format", "inputs", "params", "constants", "nodes", "output"}
        if unknown:
            raise GraphError(f"unknown keys {sorted(unknown)}")
        names = {}
        for key in ("inputs", "params", "constants"):
            items = doc.get(key, [])
            if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
                raise GraphError(f"{key} must be a list of names")
            names[key] = tuple(items)
        nodes = doc.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            raise GraphError("nodes must be a non-empty list")
        built = []
        for i, n in enumerate(nodes):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not isinstance(n.get("op"), str):
                raise GraphError(f"node {i} needs a name and an op")
            if set(n) - {"name", "op", "inputs", "hyper"}:
                raise GraphError(f"node {n['name']!r}: unknown keys {sorted(set(n) - {'name', 'op', 'inputs', 'hyper'})}")
            if not isinstance(n.get("inputs", {}), dict) or not isinstance(n.get("hyper", {}), dict):
                raise GraphError(f"node {n['name']!r}: inputs and hyper must be objects")
            built.append(GraphNode(n["name"], n["op"], dict(n.get("inputs", {})), dict(n.get("hyper", {}))))
        graph = cls(names["inputs"], names["params"], names["constants"], tuple(built), doc.get("output"))
        graph.validate()
        return graph

    def validate(self):
        """GraphError unless: names are unique; every node's op is in the catalog and binds exactly its
        record's inputs (to leaves or earlier nodes) and constants (to constants); the output is a node;
        and every leaf, constant and node is used on the way to the output."""
        seen = set()
        for name in self.leaves + self.constants + tuple(n.name for n in self.nodes):
            if name in seen:
                raise GraphError(f"the name {name!r} is used twice")
            seen.add(name)
        differentiable, constant = set(self.leaves), set(self.constants)
        for n in self.nodes:
            try:
                record = ops.get(n.op)
            except ValueError as exc:
                raise GraphError(f"node {n.name!r}: {exc}") from None
            want = set(record.inputs) | set(record.constants)
            if set(n.inputs) != want:
                raise GraphError(f"node {n.name!r} ({n.op}) binds {sorted(n.inputs)}; the op takes {sorted(want)}")
            for slot, value in n.inputs.items():
                pool = constant if slot in record.constants else differentiable
                if value not in pool:
                    kind = "a constant" if slot in record.constants else "a leaf or an earlier node"
                    raise GraphError(f"node {n.name!r}: {slot} = {value!r} is not {kind}")
            differentiable.add(n.name)
        if self.output not in {n.name for n in self.nodes}:
            raise GraphError(f"output {self.output!r} is not a node")
        used, todo = set(), [self.output]
        while todo:
            value = todo.pop()
            if value not in used:
                used.add(value)
                todo.extend(next((n.inputs.values() for n in self.nodes if n.name == value), ()))
        unused = [v for v in self.leaves + self.constants + tuple(n.name for n in self.nodes) if v not in used]
        if unused:
            raise GraphError(f"not used on the way to the output {self.output!r}: {unused}")


def schema_document(registry):
    """The graph JSON Schema with the op enum of ``registry``: ``bpcheck graph --schema`` prints it, and
    bpcheck/schemas/graph.schema.json is its output."""
    doc = json.loads(json.dumps(schema("graph.schema.json")))
    doc["properties"]["nodes"]["items"]["properties"]["op"] = {"enum": list(registry)}
    return doc


@lru_cache(maxsize=None)
def _validator():
    return jsonschema.Draft202012Validator(schema("graph.schema.json"))


def walk(graph, values, constants, cotangent, ns, slip=None, swap=None):
    """The forward pass and the chain rule over ``graph`` in namespace ``ns``.

    ``values``: {leaf: array}; ``constants``: {constant: array}; ``cotangent``: the output's upstream
    gradient. Returns {"out", "outputs": {node: array}, "cotangents": {value: array} (every node and
    leaf), "parts": {value: {"node.input": array}} (each consumer's part of a value's cotangent),
    "grads": {leaf: array}}. ``slip = (node, slip name)`` swaps that node's record slip into its
    backward (a known wrong network, for tests); ``swap = {node: record}`` evaluates those nodes with
    another record (a documented convention's)."""
    env, calls = forward(graph, values, constants, ns, swap)
    parts = {}
    cotangents = {graph.output: ns.input(np.asarray(cotangent))}
    for n, record, a, c in reversed(calls):
        g = _total(parts.get(n.name), cotangents.get(n.name))
        cotangents[n.name] = g
        local = record.vjp(ns, a, c, n.hyper, g)
        if slip is not None and slip[0] == n.name:
            local = {**local, **next(s for s in record.slips if s.name == slip[1]).vjp(ns, a, c, n.hyper, g)}
        for slot in record.inputs:
            part = local[slot]
            parts.setdefault(n.inputs[slot], {})[f"{n.name}.{slot}"] = part.reshape(a[slot].shape)
    for leaf in graph.leaves:
        cotangents[leaf] = _total(parts[leaf], None)
    return {"out": env[graph.output], "outputs": {n.name: env[n.name] for n in graph.nodes},
            "cotangents": cotangents, "parts": parts, "grads": {k: cotangents[k] for k in graph.leaves}}


def forward(graph, values, constants, ns, swap=None):
    """(every value by name, [(node, record, inputs, constants)]): the forward pass in node order
    (``swap``: {node: record} used in place of the catalog's)."""
    env = {k: ns.input(np.asarray(v)) for k, v in values.items()}
    calls = []
    for n in graph.nodes:
        record = (swap or {}).get(n.name) or ops.get(n.op)
        a = {slot: env[v] for slot, v in n.inputs.items() if slot in record.inputs}
        c = {slot: np.asarray(constants[v]) for slot, v in n.inputs.items() if slot in record.constants}
        env[n.name] = record.forward(ns, a, c, n.hyper)
        calls.append((n, record, a, c))
    return env, calls


def framework_forward(graph, module, leaves, constants):
    """Every value by name (leaves included): the forward pass in node order with each node's torch or
    JAX binding (``module`` is the ``torch`` or ``jax`` module; ``leaves`` and ``constants`` are its
    arrays). The framework differentiates the result itself: the frameworks' own built-ins composed."""
    binding = "torch" if module.__name__ == "torch" else "jax"
    env = dict(leaves)
    for n in graph.nodes:
        record = ops.get(n.op)
        a = {k: env[v] for k, v in n.inputs.items() if k in record.inputs}
        c = {k: constants[v] for k, v in n.inputs.items() if k in record.constants}
        env[n.name] = getattr(record, binding)(module, a, c, n.hyper)
    return env


def _total(parts, seed):
    """The sum of a value's parts (in node order), plus the output's own cotangent ``seed``."""
    terms = ([seed] if seed is not None else []) + list(reversed(list((parts or {}).values())))
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _tensors(r):
    """The tensors a graph judgement reads: out, each leaf's gradient, each node's cotangent."""
    return {"out": r["out"], **{f"d{k}": v for k, v in r["grads"].items()},
            **{f"delta {k}": v for k, v in r["cotangents"].items() if k not in r["grads"]}}


def truth(graph, values, constants, cotangent, swap=None):
    """{tensor: float64 array} for ``out``, ``d<leaf>`` and ``delta <node>``, each certified as in
    ``bpcheck.ops.exact.truth`` (precision doubled until every entry is good to 2^-62, or to 2^-10 of
    float64's rounding bound where it cancels), plus "parts": {value: {"node.input": float64 array}},
    "outputs": {node: float64 array}, "bits", and "uncertified": the deltas that are not finite in float64
    or not certified at MAX_BITS (a binary cross-entropy's dC/da at a probability that rounds to 1: no
    float can hold it), which a judgement leaves out. ArithmeticError if the output or a leaf's gradient
    is not certified at MAX_BITS. ``swap``: as in ``walk``."""
    e64 = {k: v.e for k, v in _tensors(walk(graph, values, constants, cotangent, Model("float64"), swap=swap)).items()}
    bits = START_BITS
    while bits <= MAX_BITS:
        with ctx.workprec(bits):
            r = walk(graph, values, constants, cotangent, Exact(bits), swap=swap)
            tensors = _tensors(r)
            mids = {k: _mid(v) for k, v in tensors.items()}
            bad = {k for k, v in tensors.items()
                   if not (np.all(np.isfinite(mids[k]))
                           and certified(mids[k], np.asarray(Exact.rad(v), dtype=np.float64), e64[k]))}
            if not bad or (bits * 2 > MAX_BITS and all(k.startswith("delta ") for k in bad)):
                mids["parts"] = {v: {k: _mid(p) for k, p in ps.items()} for v, ps in r["parts"].items()}
                mids["outputs"] = {k: _mid(v) for k, v in r["outputs"].items()}
                mids["bits"], mids["uncertified"] = bits, sorted(bad)
                return mids
        bits *= 2
    raise ArithmeticError(f"the graph's truth needs more than {MAX_BITS} bits")


def _mid(ball):
    return np.asarray(Exact.mid(ball), dtype=np.float64)


def bound(graph, values, constants, cotangent, dtype):
    """{tensor: s} as ``truth`` names them, plus "parts": the rounding model's bound in units of
    ``dtype``'s unit roundoff for an implementation of the records' equations in that dtype."""
    m = Model(dtype)
    r = walk(graph, values, constants, cotangent, m)
    out = {k: m.scale(v) for k, v in _tensors(r).items()}
    out["parts"] = {v: {k: m.scale(p) for k, p in ps.items()} for v, ps in r["parts"].items()}
    return out
