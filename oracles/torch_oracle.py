"""PyTorch autograd oracle: the contract's network built from torch.nn.functional.

Conventions normalised to the contract (everything else is torch's default):
- gelu is F.gelu(approximate="none"); gelu_tanh is F.gelu(approximate="tanh").
- leaky_relu is F.leaky_relu(z, 0.01); torch's derivative at 0 is already 0.01.
- relu'(0) = 0 in torch already (threshold_backward uses z > 0).
- binary_cross_entropy is F.binary_cross_entropy, whose log is clamped at -100
  and whose backward divides by max(a(1-a), 1e-12): kept as torch's own, so a
  saturated sigmoid shows up as a *convention* difference, not normalised away.
- softplus is F.softplus(beta=1, threshold=20), which returns z for z > 20
  (torch's own cut-over, relative error ~e^-20 there): kept.
- sse, half_sse and quadratic are F.mse_loss(reduction="sum") scaled by 1, 1/2
  and 1/(2B); mse is F.mse_loss's default mean.
Deltas dC/dz_i come from ``retain_grad`` on each pre-activation.
"""
import numpy as np
import torch
import torch.nn.functional as F

ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "elu": F.elu,
    "gelu": lambda z: F.gelu(z, approximate="none"),
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
}

LOSSES = {
    "sse": lambda a, y: F.mse_loss(a, y, reduction="sum"),
    "half_sse": lambda a, y: 0.5 * F.mse_loss(a, y, reduction="sum"),
    "mse": lambda a, y: F.mse_loss(a, y),
    "quadratic": lambda a, y: F.mse_loss(a, y, reduction="sum") / (2 * a.shape[0]),
    "binary_cross_entropy": lambda a, y: F.binary_cross_entropy(a, y),
    "bce_with_logits": lambda z, y: F.binary_cross_entropy_with_logits(z, y),
    "softmax_cross_entropy": lambda z, y: F.cross_entropy(z, y),
}


def _tensor(array, dtype, grad=False):
    return torch.tensor(np.asarray(array), dtype=dtype, requires_grad=grad)


def backprop(spec, params, x, y):
    dtype = getattr(torch, spec["dtype"])
    p = {k: _tensor(v, dtype, grad=True) for k, v in params.items()}
    x_t = _tensor(x, dtype, grad=True)
    if spec["loss"] == "softmax_cross_entropy":
        y_t = torch.tensor(np.asarray(y), dtype=torch.long)
    else:
        y_t = _tensor(y, dtype)
    a = x_t
    zs, activations = [], []
    for i, layer in enumerate(spec["layers"]):
        z = F.linear(a, p[f"layers.{i}.W"], p[f"layers.{i}.b"])
        z.retain_grad()
        a = ACTIVATIONS[layer["activation"]](z)
        zs.append(z)
        activations.append(a)
    loss = LOSSES[spec["loss"]](a, y_t)
    loss.backward()
    names = [f"layers.{i}" for i in range(len(zs))]
    numpy = lambda t: t.detach().numpy().copy()
    return {
        "loss": float(loss.item()),
        "grads": {k: numpy(v.grad) for k, v in p.items()},
        "input_grad": numpy(x_t.grad),
        "pre_activations": {n: numpy(z) for n, z in zip(names, zs)},
        "activations": {n: numpy(a) for n, a in zip(names, activations)},
        "deltas": {n: numpy(z.grad) for n, z in zip(names, zs)},
    }
