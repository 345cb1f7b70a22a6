"""A NumPy MLP with one classic backprop bug -- for bpcheck's docs and tests.

The bug: BP2 evaluates the activation derivative at the layer's *output*
instead of its input,

    delta_i = (delta_{i+1} @ W_{i+1}) * f_i'(a_i)       # wrong: a_i = f_i(z_i)
    delta_i = (delta_{i+1} @ W_{i+1}) * f_i'(z_i)       # right

It is an easy slip when the derivative used to be written in terms of the output
(sigmoid' = a (1 - a)) and the code later switched to functions of z. The output
layer (BP1) is right, so the first wrong link is the *last hidden layer's* delta;
every gradient below it inherits the error. The bug is invisible where
f'(f(z)) = f'(z) -- identity, relu, leaky_relu -- and in one-layer networks, so
a shrunk failing case has two layers and a curved hidden activation, and
``bpcheck validate examples/buggy_mlp.py:backprop`` names layer 0's delta.

Everything else (forward pass, losses, fused output deltas) is borrowed from
``numpy_mlp.py`` beside it; this file only writes its own backward loop.
"""
import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("_numpy_mlp", Path(__file__).with_name("numpy_mlp.py"))
_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mlp)


def backprop(spec, params, x, y):
    dtype = np.dtype(spec["dtype"])
    params = {k: np.asarray(v, dtype) for k, v in params.items()}
    x = np.asarray(x, dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
    zs, acts = _mlp.forward(spec, params, x)
    loss, delta = _mlp.loss_and_output_delta(spec, zs[-1], acts[-1], y)
    grads, deltas = {}, {}
    for i in reversed(range(len(spec["layers"]))):
        deltas[f"layers.{i}"] = delta
        a_prev = acts[i - 1] if i > 0 else x
        grads[f"layers.{i}.W"] = delta.T @ a_prev
        grads[f"layers.{i}.b"] = delta.sum(axis=0)
        delta = delta @ params[f"layers.{i}.W"]
        if i > 0:
            d_act = _mlp.ACTIVATIONS[spec["layers"][i - 1]["activation"]][1]
            delta = delta * d_act(acts[i - 1])          # BUG: f'(a) instead of f'(z)
    return {"loss": float(loss), "grads": grads, "input_grad": delta, "deltas": deltas}
