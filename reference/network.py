"""Forward and backward pass of a fully connected network, by hand.

What it is: the four backpropagation equations of tutorial 004 (Nielsen's
BP1-BP4), written once, in NumPy, for a batch. What it is not: fast, general
(no convolutions, no regularisation) or clever.

Batch-major form. The tutorials use column vectors for one example:
``z^l = W^l a^{l-1} + b^l``. Here a batch of B examples is stacked as rows, so
every equation is the transpose of theirs:

    z_i = a_{i-1} @ W_i.T + b_i        (B, units_i)
    a_i = act_i(z_i),  a_{-1} = x      (B, input_dim)

and the equations read (delta_i = dC/dz_i, shape (B, units_i)):

    BP1  delta_L = nabla_a C (.) act_L'(z_L)
    BP2  delta_i = (delta_{i+1} @ W_{i+1}) (.) act_i'(z_i)        [(W^{l+1})^T delta^{l+1} transposed]
    BP3  dC/db_i = sum over the batch of delta_i
    BP4  dC/dW_i = delta_i.T @ a_{i-1}                            [delta^l (a^{l-1})^T summed over examples]

and the gradient with respect to the input is ``delta_0 @ W_0``. The loss
already carries any 1/B of its definition, so BP3 and BP4 sum, never average.

Parameters are named ``layers.{i}.W`` with shape (units_i, fan_in_i) and
``layers.{i}.b`` with shape (units_i,). Everything is computed in
``spec["dtype"]`` and stays in it.
"""
import numpy as np

from reference.activations import ACTIVATIONS
from reference.losses import LOSSES


def forward(spec, params, x):
    """Return the cache ``(zs, activations)``: z_i and a_i for every layer."""
    a = x
    zs, activations = [], []
    for i, layer in enumerate(spec["layers"]):
        z = a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"]
        act, _ = ACTIVATIONS[layer["activation"]]
        a = act(z)
        zs.append(z)
        activations.append(a)
    return zs, activations


def backward(spec, params, x, y, zs, activations):
    """Return ``(loss, grads, deltas, input_grad)`` from a forward cache."""
    layers = spec["layers"]
    loss, grad_a = LOSSES[spec["loss"]](activations[-1], y)
    deltas = [None] * len(layers)
    grads = {}
    for i in reversed(range(len(layers))):
        _, d_act = ACTIVATIONS[layers[i]["activation"]]
        if i == len(layers) - 1:
            deltas[i] = grad_a * d_act(zs[i])  # BP1
        else:
            deltas[i] = (deltas[i + 1] @ params[f"layers.{i + 1}.W"]) * d_act(zs[i])  # BP2
        a_prev = activations[i - 1] if i > 0 else x
        grads[f"layers.{i}.b"] = deltas[i].sum(axis=0)  # BP3
        grads[f"layers.{i}.W"] = deltas[i].T @ a_prev  # BP4
    input_grad = deltas[0] @ params["layers.0.W"]
    return loss, grads, deltas, input_grad


def backprop(spec, params, x, y):
    """The plain-function contract: loss, gradients and intermediates for one batch."""
    dtype = np.dtype(spec["dtype"])
    params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    x = np.asarray(x, dtype=dtype)
    y = np.asarray(y) if spec["loss"] == "softmax_cross_entropy" else np.asarray(y, dtype=dtype)
    zs, activations = forward(spec, params, x)
    loss, grads, deltas, input_grad = backward(spec, params, x, y, zs, activations)
    name = [f"layers.{i}" for i in range(len(zs))]
    return {
        "loss": float(loss),
        "grads": grads,
        "input_grad": input_grad,
        "pre_activations": dict(zip(name, zs)),
        "activations": dict(zip(name, activations)),
        "deltas": dict(zip(name, deltas)),
    }
