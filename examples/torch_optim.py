"""The optimizers of ``bpcheck train`` as a PyTorch user runs them: torch.optim's own classes.

Each function has the training contract ``step(params, grads, state, hyper) -> (params, state)``: the
state holds the torch tensors and the torch.optim optimizer, built at the first call; every step copies
bpcheck's gradient into ``.grad`` and calls ``optimizer.step()`` (for clip_sgd,
``torch.nn.utils.clip_grad_norm_`` first). Check one:

    bpcheck train residual_mlp --optimizer adam --step examples/torch_optim.py:adam
"""
import numpy as np
import torch

__all__ = ["sgd", "momentum", "nesterov", "adam", "adamw", "clip_sgd"]


def _make(kind, tensors, hyper):
    lr, decay = float(hyper["lr"]), float(hyper.get("weight_decay", 0.0))
    if kind in ("sgd", "clip_sgd"):
        return torch.optim.SGD(tensors, lr=lr, weight_decay=decay)
    if kind in ("momentum", "nesterov"):
        return torch.optim.SGD(tensors, lr=lr, momentum=float(hyper["mu"]), weight_decay=decay,
                               nesterov=kind == "nesterov")
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(tensors, lr=lr, betas=(float(hyper["b1"]), float(hyper["b2"])), eps=float(hyper["eps"]),
               weight_decay=decay, foreach=False)


def _step(kind, params, grads, state, hyper):
    if state is None:
        tensors = {k: torch.tensor(v) for k, v in params.items()}
        state = {"tensors": tensors, "optimizer": _make(kind, list(tensors.values()), hyper)}
    tensors = state["tensors"]
    with torch.no_grad():
        for k, t in tensors.items():
            t.copy_(torch.from_numpy(np.ascontiguousarray(params[k])))   # bpcheck's view of the parameters
            t.grad = torch.from_numpy(np.ascontiguousarray(grads[k])).clone()
    if kind == "clip_sgd":
        torch.nn.utils.clip_grad_norm_(list(tensors.values()), float(hyper["clip"]))
    state["optimizer"].step()
    return {k: t.detach().numpy().copy() for k, t in tensors.items()}, state


def sgd(params, grads, state, hyper):
    return _step("sgd", params, grads, state, hyper)


def momentum(params, grads, state, hyper):
    return _step("momentum", params, grads, state, hyper)


def nesterov(params, grads, state, hyper):
    return _step("nesterov", params, grads, state, hyper)


def adam(params, grads, state, hyper):
    return _step("adam", params, grads, state, hyper)


def adamw(params, grads, state, hyper):
    return _step("adamw", params, grads, state, hyper)


def clip_sgd(params, grads, state, hyper):
    return _step("clip_sgd", params, grads, state, hyper)
