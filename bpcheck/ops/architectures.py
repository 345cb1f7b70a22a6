"""Whole networks as graphs of op records, drawn at several sizes: what ``bpcheck graph`` checks.

An ``Architecture`` builds its graph (``bpcheck.ops.graph``) and draws its leaves and constants for a
size (a dict of dimensions; ``sizes`` lists them smallest first, and shrinking a failure walks that
list) and a family. Every architecture has the families ``plain`` (a scalar cotangent drawn away from
1, as any op case) and ``uniform_cotangent`` (cotangent 1: what training sends). Node names are the
contract: a candidate returns ``d<leaf>`` for every leaf and may return each node's cotangent (its delta).

- ``residual_mlp``: x (N, D) -> affine -> relu -> affine -> add x (the skip: x feeds two nodes) ->
  layer norm -> affine -> softmax cross-entropy (CS231n's softmax_loss) with labels y (N,).
- ``cnn``: CS231n's three-layer convnet with spatial batch norm: x (N, C, H, W) -> conv (stride 1,
  "same" padding) -> spatial batch norm -> relu -> 2x2 max-pool, stride 2 -> affine -> relu -> affine ->
  softmax_loss. Family ``dead_window``: a pooling window whose four values are all dead after the relu
  (tied zeros), where a backward that skips the relu's mask shows -- a window no plain draw is sure to have.
- ``tied_embedding``: a language-model step whose output layer reuses the embedding matrix (weight
  tying, Press & Wolf 2017): ids (N,) -> embedding W -> affine with w = W^T -> softmax_loss; W feeds two
  nodes, so dW is the sum of both parts.
- ``transformer_block``: a pre-norm block (GPT-2's order): x (B, T, C) as B T tokens -> layer norm ->
  q, k, v projections -> heads split -> causal attention -> heads merged -> output projection -> + x ->
  layer norm -> affine -> gelu -> affine -> + (the first sum). Its output is the block's (B T, C)
  output, so the cotangent is a tensor. Both residual sums read a tensor twice. Families beyond plain
  causal attention: ``masked_keys`` (left padding; rows with no key at all), ``additive_bias``,
  ``dropout_keep`` (a given keep-mask, p = 0.25).
- ``lstm_lm``: a character-level LSTM language model over a sequence: ids (N, T) -> embedding ->
  LSTM (CS231n's lstm_forward, gates i, f, o, g; initial state h0 an input) -> (N T, H) -> affine ->
  softmax_loss against the next characters y (N T,).
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bpcheck import ops
from bpcheck.ops.algebra import Plain
from bpcheck.ops.graph import Graph, forward
from bpcheck.ops.record import COMMON_FAMILIES

__all__ = ["Architecture", "ARCHITECTURES", "get"]


@dataclass(frozen=True)
class Architecture:
    """``graph(size) -> Graph``; ``draw(rng, family, dtype, size) -> (values, constants)``;
    ``family_hyper(family) -> {node: hyper-parameters}`` a family changes (dropout's p)."""
    name: str
    description: str
    graph: Callable
    draw: Callable
    sizes: tuple
    families: tuple = COMMON_FAMILIES
    family_hyper: Callable = None

    def build(self, size, family="plain"):
        """The graph of a case of ``family`` at ``size``."""
        graph = self.graph(size)
        changes = self.family_hyper(family) if self.family_hyper else {}
        if not changes:
            return graph
        doc = graph.to_json()
        for node in doc["nodes"]:
            node["hyper"].update(changes.get(node["name"], {}))
        return Graph.from_json(doc)


def _node(name, op, hyper=None, **inputs):
    return {"name": name, "op": op, "inputs": inputs, "hyper": hyper or {}}


def _normal(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _labels(rng, n, classes):
    return rng.integers(0, classes, size=n).astype(np.int64)


# --- residual MLP ----------------------------------------------------------------------------------

def _residual_graph(size):
    return Graph.from_json({
        "inputs": ["x"], "params": ["w1", "b1", "w2", "b2", "gamma", "beta", "w3", "b3"], "constants": ["y"],
        "nodes": [_node("fc1", "affine", x="x", w="w1", b="b1"),
                  _node("relu", "relu", x="fc1"),
                  _node("fc2", "affine", x="relu", w="w2", b="b2"),
                  _node("skip", "add", x="fc2", y="x"),
                  _node("norm", "layernorm", {"eps": 1e-5}, x="skip", gamma="gamma", beta="beta"),
                  _node("fc3", "affine", x="norm", w="w3", b="b3"),
                  _node("loss", "softmax_loss", x="fc3", y="y")],
        "output": "loss"})


def _residual_draw(rng, family, dtype, size):
    n, d, m, k = size["N"], size["D"], size["M"], size["K"]
    return ({"x": _normal(rng, (n, d), dtype), "w1": _normal(rng, (d, m), dtype, d ** -0.5),
             "b1": _normal(rng, (m,), dtype, 0.1), "w2": _normal(rng, (m, d), dtype, m ** -0.5),
             "b2": _normal(rng, (d,), dtype, 0.1), "gamma": (1 + _normal(rng, (d,), "float64", 0.3)).astype(dtype),
             "beta": _normal(rng, (d,), dtype, 0.1), "w3": _normal(rng, (d, k), dtype, d ** -0.5),
             "b3": _normal(rng, (k,), dtype, 0.1)},
            {"y": _labels(rng, n, k)})


# --- CS231n's three-layer convnet, with spatial batch norm -----------------------------------------

def _cnn_graph(size):
    k = size["K"]
    return Graph.from_json({
        "inputs": ["x"], "params": ["W1", "b1", "gamma", "beta", "W2", "b2", "W3", "b3"], "constants": ["y"],
        "nodes": [_node("conv", "conv2d", {"stride": [1, 1], "pad": [(k - 1) // 2] * 2, "dilation": [1, 1]},
                        x="x", w="W1", b="b1"),
                  _node("bn", "spatial_batchnorm", {"eps": 1e-5}, x="conv", gamma="gamma", beta="beta"),
                  _node("relu1", "relu", x="bn"),
                  _node("pool", "maxpool2d", {"pool_height": 2, "pool_width": 2, "stride": 2}, x="relu1"),
                  _node("fc1", "affine", x="pool", w="W2", b="b2"),
                  _node("relu2", "relu", x="fc1"),
                  _node("fc2", "affine", x="relu2", w="W3", b="b3"),
                  _node("loss", "softmax_loss", x="fc2", y="y")],
        "output": "loss"})


def _cnn_values(rng, dtype, size):
    n, c, hw, f, k, hidden, classes = (size[key] for key in ("N", "C", "HW", "F", "K", "hidden", "classes"))
    pooled = f * (hw // 2) ** 2
    return ({"x": _normal(rng, (n, c, hw, hw), dtype), "W1": _normal(rng, (f, c, k, k), dtype, (c * k * k) ** -0.5),
             "b1": _normal(rng, (f,), dtype, 0.1), "gamma": (1 + _normal(rng, (f,), "float64", 0.3)).astype(dtype),
             "beta": _normal(rng, (f,), dtype, 0.1), "W2": _normal(rng, (pooled, hidden), dtype, pooled ** -0.5),
             "b2": _normal(rng, (hidden,), dtype, 0.1), "W3": _normal(rng, (hidden, classes), dtype, hidden ** -0.5),
             "b3": _normal(rng, (classes,), dtype, 0.1)},
            {"y": _labels(rng, n, classes)})


def _dead_window(values, constants, size, dtype):
    """x pushed (along the conv's own VJP) until the first 2x2 pooling window of sample 0, channel 0 is all
    dead after batch norm and relu: four tied zeros, where the gradient must stop at the relu. Channel 0's
    gamma is made positive and its beta negative: batch norm bounds how far below the mean a value can go
    (|xhat| <= sqrt(n - 1)), so a beta above gamma could keep a window alive however x moves. Then the
    hidden layer's bias is raised until its relu is alive everywhere, so that a gradient reaches the window."""
    graph, ns = _cnn_graph(size), Plain()
    values = {**values, "gamma": values["gamma"].copy(), "beta": values["beta"].copy()}
    values["gamma"][0], values["beta"][0] = abs(values["gamma"][0]), -abs(values["beta"][0])
    conv, a = graph.node("conv"), {k: ns.input(values[v]) for k, v in (("x", "x"), ("w", "W1"), ("b", "b1"))}
    rows = []                                          # the conv's rows for the window's four outputs
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
        e = np.zeros((size["N"], size["F"], size["HW"], size["HW"]))
        e[0, 0, i, j] = 1.0
        rows.append(np.asarray(ops.get("conv2d").vjp(ns, a, {}, conv.hyper, ns.input(e))["x"], dtype=np.float64))
    rows = np.stack([r.ravel() for r in rows])
    push = (rows.T @ np.linalg.lstsq(rows @ rows.T, np.ones(4), rcond=None)[0]).reshape(values["x"].shape)
    push /= max(np.max(np.abs(push)), 1e-300)          # lowers each of the four outputs by the same amount
    x = np.asarray(values["x"], dtype=np.float64)
    for step in 0.25 * 2.0 ** np.arange(12):
        moved = {**values, "x": (x - step * push).astype(dtype)}
        env = forward(graph, moved, constants, ns)[0]
        if np.all(np.asarray(env["relu1"])[0, 0, :2, :2] == 0):
            lift = max(0.0, 0.5 - float(np.min(np.asarray(env["fc1"]))))
            return {**moved, "b2": (np.asarray(values["b2"], dtype=np.float64) + lift).astype(dtype)}
    raise AssertionError("no dead window reached")                # never on the listed sizes (tests/test_graph.py)


def _cnn_draw(rng, family, dtype, size):
    values, constants = _cnn_values(rng, dtype, size)
    if family == "dead_window":
        values = _dead_window(values, constants, size, dtype)
    return values, constants


# --- weight tying ----------------------------------------------------------------------------------

def _tied_graph(size):
    return Graph.from_json({
        "inputs": [], "params": ["W", "b"], "constants": ["ids", "y"],
        "nodes": [_node("embed", "embedding", W="W", x="ids"),
                  _node("WT", "transpose", {"axes": [1, 0]}, x="W"),
                  _node("logits", "affine", x="embed", w="WT", b="b"),
                  _node("loss", "softmax_loss", x="logits", y="y")],
        "output": "loss"})


def _tied_draw(rng, family, dtype, size):
    n, vocab, d = size["N"], size["V"], size["D"]
    ids = _labels(rng, n, vocab)
    ids[0] = ids[-1] if n > 1 else ids[0]                    # a repeated id: its row gathers twice
    return ({"W": _normal(rng, (vocab, d), dtype), "b": _normal(rng, (vocab,), dtype, 0.1)},
            {"ids": ids, "y": _labels(rng, n, vocab)})


# --- a pre-norm transformer block -------------------------------------------------------------------

def _heads(name, source, size):
    """Nodes turning (B T, C) tokens into (B, H, T, C / H) heads."""
    b, t, h, c = size["B"], size["T"], size["H"], size["C"]
    return [_node(f"{name}_split", "reshape", {"shape": [b, t, h, c // h]}, x=source),
            _node(f"{name}_heads", "transpose", {"axes": [0, 2, 1, 3]}, x=f"{name}_split")]


def _transformer_graph(size):
    b, t, c = size["B"], size["T"], size["C"]
    nodes = [_node("ln1", "layernorm", {"eps": 1e-5}, x="x", gamma="g1", beta="b1")]
    for name in ("q", "k", "v"):
        nodes.append(_node(name, "affine", x="ln1", w=f"W{name}", b=f"b{name}"))
        nodes.extend(_heads(name, name, size))
    nodes += [_node("attn", "attention", {"scale": float((c // size["H"]) ** -0.5), "causal": True, "dropout_p": 0.0},
                    q="q_heads", k="k_heads", v="v_heads", mask="mask", bias="bias", keep="keep"),
              _node("merge_t", "transpose", {"axes": [0, 2, 1, 3]}, x="attn"),
              _node("merge", "reshape", {"shape": [b * t, c]}, x="merge_t"),
              _node("proj", "affine", x="merge", w="Wo", b="bo"),
              _node("res1", "add", x="x", y="proj"),
              _node("ln2", "layernorm", {"eps": 1e-5}, x="res1", gamma="g2", beta="b2"),
              _node("fc1", "affine", x="ln2", w="W1", b="c1"),
              _node("gelu", "gelu", x="fc1"),
              _node("fc2", "affine", x="gelu", w="W2", b="c2"),
              _node("res2", "add", x="res1", y="fc2")]
    return Graph.from_json({
        "inputs": ["x"], "params": ["g1", "b1", "Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo", "g2", "b2",
                                    "W1", "c1", "W2", "c2"],
        "constants": ["mask", "bias", "keep"], "nodes": nodes, "output": "res2"})


def _transformer_draw(rng, family, dtype, size):
    """Plain: causal attention only (mask all True, bias 0, keep all True). ``masked_keys``: left padding,
    batch element b's first p_b keys masked for every query (b = 0 always padded), so its first p_b query
    rows see no key at all (their output is 0, torch's choice); ``additive_bias``: a (T, T) bias;
    ``dropout_keep``: a given keep-mask with p = 0.25, some entries dropped and some kept."""
    b, t, c, h, m = size["B"], size["T"], size["C"], size["H"], size["hidden"]
    values = {"x": _normal(rng, (b * t, c), dtype)}
    for gamma, beta in (("g1", "b1"), ("g2", "b2")):
        values[gamma] = (1 + _normal(rng, (c,), "float64", 0.2)).astype(dtype)
        values[beta] = _normal(rng, (c,), dtype, 0.1)
    for name in ("q", "k", "v", "o"):
        values[f"W{name}"] = _normal(rng, (c, c), dtype, c ** -0.5)
        values[f"b{name}"] = _normal(rng, (c,), dtype, 0.1)
    values.update({"W1": _normal(rng, (c, m), dtype, c ** -0.5), "c1": _normal(rng, (m,), dtype, 0.1),
                   "W2": _normal(rng, (m, c), dtype, m ** -0.5), "c2": _normal(rng, (c,), dtype, 0.1)})
    mask, bias, keep = np.ones((t, t), dtype=bool), np.zeros((t, t), dtype=dtype), np.ones((b, h, t, t), dtype=bool)
    if family == "masked_keys":
        mask = np.ones((b, h, t, t), dtype=bool)
        for i in range(b):
            mask[i, :, :, :int(rng.integers(1 if i == 0 else 0, t))] = False
    if family == "additive_bias":
        bias = _normal(rng, (t, t), dtype, 1.5)
    if family == "dropout_keep":
        keep = rng.random((b, h, t, t)) >= DROPOUT_P
        keep.flat[0], keep.flat[-1] = False, True
    return values, {"mask": mask, "bias": bias, "keep": keep}


DROPOUT_P = 0.25


# --- a character-level LSTM language model -----------------------------------------------------------

def _lstm_graph(size):
    n, t, hidden = size["N"], size["T"], size["H"]
    return Graph.from_json({
        "inputs": ["h0"], "params": ["W_embed", "Wx", "Wh", "b", "W_out", "b_out"], "constants": ["ids", "y"],
        "nodes": [_node("embed", "embedding", W="W_embed", x="ids"),
                  _node("lstm", "lstm", x="embed", h0="h0", Wx="Wx", Wh="Wh", b="b"),
                  _node("steps", "reshape", {"shape": [n * t, hidden]}, x="lstm"),
                  _node("scores", "affine", x="steps", w="W_out", b="b_out"),
                  _node("loss", "softmax_loss", x="scores", y="y")],
        "output": "loss"})


def _lstm_draw(rng, family, dtype, size):
    n, t, vocab, d, hidden = size["N"], size["T"], size["V"], size["D"], size["H"]
    k = 0.5 / np.sqrt(hidden)
    return ({"h0": _normal(rng, (n, hidden), dtype, 0.5), "W_embed": _normal(rng, (vocab, d), dtype),
             "Wx": rng.uniform(-k, k, (d, 4 * hidden)).astype(dtype),
             "Wh": rng.uniform(-k, k, (hidden, 4 * hidden)).astype(dtype),
             "b": rng.uniform(-k, k, 4 * hidden).astype(dtype),
             "W_out": _normal(rng, (hidden, vocab), dtype, hidden ** -0.5), "b_out": _normal(rng, (vocab,), dtype, 0.1)},
            {"ids": _labels(rng, n * t, vocab).reshape(n, t), "y": _labels(rng, n * t, vocab)})


ARCHITECTURES = {a.name: a for a in (
    Architecture("residual_mlp", "affine -> relu -> affine -> + x -> layer norm -> affine -> softmax loss",
                 _residual_graph, _residual_draw,
                 sizes=({"N": 2, "D": 3, "M": 2, "K": 2}, {"N": 3, "D": 4, "M": 4, "K": 3},
                        {"N": 4, "D": 5, "M": 6, "K": 4})),
    Architecture("cnn", "conv -> spatial batch norm -> relu -> max-pool -> affine -> relu -> affine -> softmax loss",
                 _cnn_graph, _cnn_draw, families=COMMON_FAMILIES + ("dead_window",),
                 sizes=({"N": 2, "C": 1, "HW": 2, "F": 1, "K": 1, "hidden": 2, "classes": 2},
                        {"N": 2, "C": 2, "HW": 4, "F": 2, "K": 3, "hidden": 3, "classes": 3},
                        {"N": 3, "C": 3, "HW": 6, "F": 3, "K": 3, "hidden": 5, "classes": 4})),
    Architecture("tied_embedding", "embedding W -> affine with W^T -> softmax loss (weight tying)",
                 _tied_graph, _tied_draw,
                 sizes=({"N": 2, "V": 2, "D": 2}, {"N": 3, "V": 4, "D": 3}, {"N": 5, "V": 6, "D": 4})),
    Architecture("transformer_block", "pre-norm: layer norm -> causal multi-head attention -> + x -> layer norm "
                 "-> affine -> gelu -> affine -> +", _transformer_graph, _transformer_draw,
                 families=COMMON_FAMILIES + ("masked_keys", "additive_bias", "dropout_keep"),
                 family_hyper=lambda family: {"attn": {"dropout_p": DROPOUT_P}} if family == "dropout_keep" else {},
                 sizes=({"B": 1, "T": 2, "C": 3, "H": 1, "hidden": 2}, {"B": 2, "T": 3, "C": 4, "H": 2, "hidden": 6},
                        {"B": 2, "T": 4, "C": 6, "H": 2, "hidden": 8})),
    Architecture("lstm_lm", "embedding -> LSTM over the sequence -> affine per step -> softmax loss",
                 _lstm_graph, _lstm_draw,
                 sizes=({"N": 1, "T": 1, "V": 2, "D": 2, "H": 1}, {"N": 2, "T": 3, "V": 4, "D": 3, "H": 3},
                        {"N": 2, "T": 4, "V": 5, "D": 3, "H": 4})),
)}


def get(name):
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None
