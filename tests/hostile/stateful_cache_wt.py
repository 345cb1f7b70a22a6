"""Caches every W transposed for the backward pass and refreshes the cache only when a shape (or the dtype)
changes: right on the first call of each architecture, wrong -- it backpropagates through the previous
call's weights -- on a later call with the same shapes and other weights. Repeating an identical call
cannot show it (the cache then holds the right weights); a call with the same shapes and other values
in between does."""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("hostile_correct", Path(__file__).with_name("_correct.py"))
correct = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(correct)
mlp = correct.numpy_mlp

_cache = {"shapes": None, "wt": {}}      # every W transposed, kept between calls


def _transposed_weights(params, dtype):
    """Every layers.i.W transposed: recomputed when the weights' shapes or dtype differ from the last
    call's, else the last call's (the bug: the values are never compared)."""
    shapes = (str(dtype), tuple(sorted((k, v.shape) for k, v in params.items())))
    if _cache["shapes"] != shapes:
        _cache["shapes"] = shapes
        _cache["wt"] = {k: np.ascontiguousarray(v.T) for k, v in params.items() if k.endswith(".W")}
    return _cache["wt"]


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    for layer in spec["layers"]:
        if layer["activation"] not in mlp.ACTIVATIONS:
            raise NotImplementedError(f"activation {layer['activation']!r}")
    params = {k: np.asarray(v, dtype) for k, v in params.items()}
    x = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
    zs, acts = mlp.forward(spec, params, x)
    wt = _transposed_weights(params, dtype)
    loss, delta = mlp.loss_and_output_delta(spec, zs[-1], acts[-1], y)
    grads, deltas = {}, {}
    for i in reversed(range(len(spec["layers"]))):
        deltas[f"layers.{i}"] = delta
        a_prev = acts[i - 1] if i > 0 else x
        grads[f"layers.{i}.W"] = delta.T @ a_prev
        grads[f"layers.{i}.b"] = delta.sum(axis=0)
        delta = delta @ wt[f"layers.{i}.W"].T          # dC/da_{i-1} (dC/dx for i = 0), through the cached W
        if i > 0:
            delta = delta * mlp.ACTIVATIONS[spec["layers"][i - 1]["activation"]][1](zs[i - 1])
    return {"loss": float(loss), "grads": grads, "input_grad": delta, "deltas": deltas}
