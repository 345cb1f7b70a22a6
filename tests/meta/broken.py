"""Deliberately broken backprops: each is the reference with one classic bug.

The property suite must fail on every one of them (tests/meta/test_meta.py).
"""
import numpy as np

from reference.activations import ACTIVATIONS
from reference.losses import LOSSES
from reference.network import backprop


def _broken_backprop(bug):
    def run(spec, params, x, y):
        out = backprop(spec, params, x, y)  # a correct result whose gradients we recompute, wrongly
        zs = [out["pre_activations"][f"layers.{i}"] for i in range(len(spec["layers"]))]
        acts = [out["activations"][f"layers.{i}"] for i in range(len(spec["layers"]))]
        dtype = np.dtype(spec["dtype"])
        y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype)
        _, grad_a = LOSSES[spec["loss"]](acts[-1], y)
        delta = grad_a * ACTIVATIONS[spec["layers"][-1]["activation"]][1](zs[-1])
        for i in reversed(range(len(spec["layers"]))):
            a_prev = acts[i - 1] if i > 0 else np.asarray(x, dtype)
            W = params[f"layers.{i}.W"]
            if bug == "transposed_weight_grad":
                out["grads"][f"layers.{i}.W"] = (a_prev.T @ delta).reshape(W.shape)  # reshape hides the .T
            else:
                out["grads"][f"layers.{i}.W"] = delta.T @ a_prev
            out["grads"][f"layers.{i}.b"] = delta.mean(axis=0) if bug == "mean_not_sum" else delta.sum(axis=0)
            if i > 0:
                delta = delta @ W
                if bug != "missing_activation_derivative":
                    delta = delta * ACTIVATIONS[spec["layers"][i - 1]["activation"]][1](zs[i - 1])
        out.pop("deltas")
        out["input_grad"] = delta @ params["layers.0.W"]  # carries the bug down to x, as it would
        return out
    run.__name__ = bug
    return run


transposed_weight_grad = _broken_backprop("transposed_weight_grad")
missing_activation_derivative = _broken_backprop("missing_activation_derivative")
mean_not_sum = _broken_backprop("mean_not_sum")
BUGS = [transposed_weight_grad, missing_activation_derivative, mean_not_sum]
