"""PyTorch autograd oracle: the contract's network composed from the op records' torch bindings.

The spec compiles to its graph (``bpcheck.ops.network.compile_spec``: per layer a transpose of W,
an affine node and an activation node, then the loss node), and each node runs its record's torch
binding (``bpcheck.ops.graph.framework_forward``), each binding torch's own built-in; torch's
autograd differentiates the whole. So what the oracle computes for an op is written once, in its
record. Conventions normalised to the contract (everything else is torch's default):

- affine is torch.nn.functional.linear (x W^T + b, with W the spec's (units, fan-in) matrix).
- gelu is F.gelu(approximate="none"); gelu_tanh is F.gelu(approximate="tanh").
- leaky_relu is F.leaky_relu(z, 0.01); torch's derivative at 0 is already 0.01.
- relu'(0) = 0 in torch already (threshold_backward uses z > 0).
- binary_cross_entropy is F.binary_cross_entropy, whose log is clamped at -100
  and whose backward divides by max(a(1-a), 1e-12): kept as torch's own, so a
  saturated sigmoid shows up as a *convention* difference, not normalised away.
- softplus is F.softplus(beta=1, threshold=20), which returns z for z > 20
  (torch's own cut-over, relative error ~e^-20 there): kept.
- sse, half_sse and quadratic are F.mse_loss(reduction="sum") scaled by 1, 1/2
  and 1/(2B); mse is F.mse_loss's default mean; softmax_cross_entropy is F.cross_entropy.
Deltas dC/dz_i come from ``retain_grad`` on each pre-activation (the affine node ``layers.i.z``).
"""
import numpy as np
import torch

from bpcheck.ops.graph import framework_forward
from bpcheck.ops.network import compile_spec


def _tensor(array, dtype, grad=False):
    return torch.tensor(np.asarray(array), dtype=dtype, requires_grad=grad)


def backprop(spec, params, x, y):
    dtype = getattr(torch, spec["dtype"])
    graph = compile_spec(spec)
    leaves = {"x": _tensor(x, dtype, grad=True), **{k: _tensor(v, dtype, grad=True) for k, v in params.items()}}
    labels = spec["loss"] == "softmax_cross_entropy"
    y_t = torch.tensor(np.asarray(y), dtype=torch.long) if labels else _tensor(y, dtype)
    env = framework_forward(graph, torch, leaves, {"y": y_t})
    names = [f"layers.{i}" for i in range(len(spec["layers"]))]
    for name in names:
        env[f"{name}.z"].retain_grad()
    loss = env[graph.output]
    loss.backward()
    numpy = lambda t: t.detach().numpy().copy()  # noqa: E731
    return {
        "loss": float(loss.item()),
        "grads": {k: numpy(leaves[k].grad) for k in params},
        "input_grad": numpy(leaves["x"].grad),
        "pre_activations": {n: numpy(env[f"{n}.z"]) for n in names},
        "activations": {n: numpy(env[f"{n}.a"]) for n in names},
        "deltas": {n: numpy(env[f"{n}.z"].grad) for n in names},
    }
