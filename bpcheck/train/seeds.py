"""The tutorials' own gradient-descent examples as trainable graphs (tests/test_train.py runs them).

- ``descent_1d`` (tutorial 002): minimise f(x) = x^4 - 3 x^3, whose derivative is the tutorial's
  f'(x) = 4 x^3 - 9 x^2, from x = 6 with step 0.01; the minimum is at x = 9/4 = 2.25. The graph: x2 = x x,
  x3 = x2 x, x4 = x3 x, f = x4 + c x3 with the constant c = -3 (an input that is not trained).
- ``neuron`` (tutorial 000): one neuron y^ = 1 w1 + 2 w2 + b trained on the pair (1, 2) -> 10 with
  C = (y^ - 10)^2, the tutorial's cost (the ``sse`` loss).
- ``sigmoid_layer`` (tutorial 003): a fully connected layer z = W x + b, a = sigmoid(z), trained with
  A <- A - delta dL/dA on a quadratic loss.
"""
import numpy as np

from bpcheck.ops.architectures import Architecture
from bpcheck.ops.graph import Graph

__all__ = ["SEED_ARCHITECTURES"]


def _node(name, op, **inputs):
    return {"name": name, "op": op, "inputs": inputs, "hyper": {}}


def _descent_graph(size):
    return Graph.from_json({
        "inputs": ["c"], "params": ["x"], "constants": [],
        "nodes": [_node("x2", "mul", x="x", y="x"), _node("x3", "mul", x="x2", y="x"),
                  _node("x4", "mul", x="x3", y="x"), _node("cx3", "mul", x="x3", y="c"),
                  _node("f", "add", x="x4", y="cx3")],
        "output": "f"})


def _descent_draw(rng, family, dtype, size):
    return {"x": np.full((1, 1), size["x0"], dtype=dtype), "c": np.full((1, 1), -3.0, dtype=dtype)}, {}


def _neuron_graph(size):
    return Graph.from_json({
        "inputs": ["a"], "params": ["w", "b"], "constants": ["y"],
        "nodes": [_node("y_hat", "affine", x="a", w="w", b="b"), _node("cost", "sse", a="y_hat", y="y")],
        "output": "cost"})


def _neuron_draw(rng, family, dtype, size):
    return ({"a": np.array([[1.0, 2.0]], dtype=dtype), "w": np.array([[0.5], [-0.5]], dtype=dtype),
             "b": np.array([0.25], dtype=dtype)}, {"y": np.array([[10.0]], dtype=dtype)})


def _layer_graph(size):
    return Graph.from_json({
        "inputs": ["x"], "params": ["W", "b"], "constants": ["y"],
        "nodes": [_node("z", "affine", x="x", w="W", b="b"), _node("a", "sigmoid", x="z"),
                  _node("loss", "quadratic", a="a", y="y")],
        "output": "loss"})


def _layer_draw(rng, family, dtype, size):
    n, d, m = size["N"], size["D"], size["M"]
    return ({"x": rng.standard_normal((n, d)).astype(dtype), "W": (rng.standard_normal((d, m)) / np.sqrt(d)).astype(dtype),
             "b": np.zeros(m, dtype=dtype)}, {"y": rng.uniform(0.1, 0.9, (n, m)).astype(dtype)})


SEED_ARCHITECTURES = {a.name: a for a in (
    Architecture("descent_1d", "f(x) = x^4 - 3 x^3 (f' = 4x^3 - 9x^2, tutorial 002)", _descent_graph, _descent_draw,
                 sizes=({"x0": 6.0},)),
    Architecture("neuron", "y^ = w . (1, 2) + b against 10, C = (y^ - 10)^2 (tutorial 000)", _neuron_graph,
                 _neuron_draw, sizes=({},)),
    Architecture("sigmoid_layer", "a = sigmoid(x W + b), quadratic loss (tutorial 003)", _layer_graph, _layer_draw,
                 sizes=({"N": 4, "D": 3, "M": 2},)),
)}
