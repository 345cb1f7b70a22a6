"""Section 2: seconds per case against parameter count, bpcheck against torch.autograd.gradcheck.

Networks: ``SIZES`` -- tanh hidden layers, an identity layer of 10 logits, softmax
cross-entropy, batch 32 -- of about 10^2 .. 10^6 parameters.

bpcheck: the reference as candidate through bpcheck's adapter (``load_target``: fresh copies,
result validated) and ``bpcheck.judge.judge.judge`` on the one case: the certified truth, the running
error bounds, the comparison and the classes. float32 and float64.

gradcheck: ``torch.autograd.gradcheck`` at its defaults (float64: it is made for double) on a
``torch.autograd.Function`` whose forward is the reference's loss (forward pass only) and
whose backward returns the reference's gradients of every parameter tensor. Its slow mode
perturbs every parameter twice (central differences, eps 1e-6), so its cost is linear in the
parameter count. Where the whole check would take longer than ``cap_s``, a fixed number of
randomly chosen parameters is perturbed exactly as gradcheck does (clone, copy_(orig - eps),
forward, copy_(orig + eps), forward, copy_(orig), on a flat parameter vector the tensors are
views of) and the time is extrapolated linearly to every parameter, plus one analytic
backward; those values are marked extrapolated. At the sizes where gradcheck runs in full,
the same extrapolation is also computed, to show how well it predicts the real run.
"""
import time

import numpy as np

from benchmarks.common import arch_label, calls_for, median_time, mlp_case, n_params

# (input_dim, hidden widths): with 10 classes, ~10^2, 10^3, 10^4, 10^5, 10^6 parameters
SIZES = [(4, [8]), (16, [32, 16]), (64, [96, 32]), (256, [256, 128]), (784, [1024, 192])]
BATCH, CLASSES = 32, 10
EPS = 1e-6                 # gradcheck's default


def _loss_only(spec):
    """The reference's loss from its forward pass alone (what gradcheck's perturbations evaluate)."""
    from reference.losses import LOSSES
    from reference.network import forward

    def loss(params, x, y):
        _, activations = forward(spec, params, x)
        return LOSSES[spec["loss"]](activations[-1], y)[0]
    return loss


def torch_function(case, keys):
    """The reference behind a torch.autograd.Function: forward = loss, backward = its gradients."""
    import torch

    from reference.network import backprop
    loss = _loss_only(case.spec)

    class Reference(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            params = {k: t.detach().numpy() for k, t in zip(keys, tensors)}   # views, no copy
            ctx.params = params        # gradcheck restores every perturbed entry before the backward
            return torch.tensor(float(loss(params, case.x, case.y)), dtype=torch.float64)

        @staticmethod
        def backward(ctx, grad_output):
            grads = backprop(case.spec, ctx.params, case.x, case.y)["grads"]
            return tuple(grad_output * torch.as_tensor(np.asarray(grads[k], np.float64)) for k in keys)

    return Reference.apply


def _flat_inputs(case, keys):
    """One flat float64 parameter vector and the parameter tensors as views of it (requires_grad)."""
    import torch
    flat = torch.tensor(np.concatenate([case.params[k].ravel() for k in keys]).astype(np.float64))
    views, start = [], 0
    for k in keys:
        size = case.params[k].size
        views.append(flat[start:start + size].view(case.params[k].shape))
        start += size
    return flat, views


def perturbation_time(case, keys, count, seed=0):
    """Seconds for ``count`` gradcheck-style central differences on random parameters."""
    import torch
    fn = torch_function(case, keys)
    flat, views = _flat_inputs(case, keys)
    inputs = [v.requires_grad_() for v in views]
    picks = np.random.default_rng(seed).choice(flat.numel(), size=min(count, flat.numel()), replace=False)
    start = time.perf_counter()
    with torch.no_grad():
        for i in picks:
            entry = flat[int(i):int(i) + 1]
            orig = entry.clone()
            entry.copy_(orig - EPS)
            outa = fn(*inputs)
            entry.copy_(orig + EPS)
            outb = fn(*inputs)
            entry.copy_(orig)
            (outb - outa) / (2 * EPS)
    return (time.perf_counter() - start), len(picks)


def analytic_time(case, keys):
    """Seconds for the analytic side: one forward and one backward through the Function."""
    import torch
    fn = torch_function(case, keys)
    inputs = [torch.tensor(case.params[k], dtype=torch.float64, requires_grad=True) for k in keys]
    return median_time(lambda: fn(*inputs).backward(), repeats=3, warmup=1)["median_s"]


def gradcheck_time(case, keys):
    import torch
    fn = torch_function(case, keys)
    inputs = tuple(torch.tensor(case.params[k], dtype=torch.float64, requires_grad=True) for k in keys)
    start = time.perf_counter()
    ok = torch.autograd.gradcheck(fn, inputs)
    return time.perf_counter() - start, bool(ok)


def bpcheck_time(case, repeats):
    from bpcheck.judge.judge import judge
    from bpcheck.run.backends import load_target
    backend = load_target("reference", "reference")
    verdict = []

    def once():
        j = judge(case, backend.run(case), who="reference")
        verdict.append(j.verdict())
    calls = calls_for(once, 0.2, cap=50) if repeats > 2 else 1
    stats = median_time(once, repeats=repeats, calls=calls, warmup=0)
    return {**stats, "verdict": verdict[-1]}


def scaling(params):
    import torch  # noqa: F401  (imported before any clock)

    from bpcheck.core.spec import param_shapes
    cap = params.get("cap_s", 60.0)
    probe_s = params.get("probe_s", 4.0)
    sizes = [SIZES[i] for i in params.get("sizes", range(len(SIZES)))]
    bpcheck_time(mlp_case(4, [8], CLASSES, BATCH, "float64"), repeats=1)      # imports, flint constants
    rows = []
    for input_dim, hidden in sizes:
        row = {}
        for dtype in ("float32", "float64"):
            case = mlp_case(input_dim, hidden, CLASSES, BATCH, dtype)
            p = n_params(case.spec)
            row.update(arch=arch_label(case.spec), params=p, batch=BATCH)
            row[f"bpcheck_{dtype}"] = bpcheck_time(case, repeats=5 if p < 5e5 else 2)
        case = mlp_case(input_dim, hidden, CLASSES, BATCH, "float64")
        keys = list(param_shapes(case.spec))
        p = row["params"]
        backward = analytic_time(case, keys)
        # the estimate: a first probe of 50 perturbations, then enough to fill probe_s seconds
        t50, k50 = perturbation_time(case, keys, 50, seed=1)
        k = int(min(p, max(100, probe_s / max(t50 / k50, 1e-9))))
        t_k, k = perturbation_time(case, keys, k, seed=2)
        estimate = backward + p * t_k / k
        g = {"per_perturbation_s": t_k / k, "perturbations_timed": k, "analytic_s": backward,
             "estimate_s": estimate}
        if estimate <= cap:
            runs = []
            for _ in range(3 if estimate < 1 else 1):
                seconds, ok = gradcheck_time(case, keys)
                runs.append(seconds)
            g.update(seconds=float(np.median(runs)), extrapolated=False, passed=ok, runs=len(runs),
                     estimate_over_measured=estimate / float(np.median(runs)))
        else:
            g.update(seconds=estimate, extrapolated=True, passed=None, runs=0)
        row["gradcheck_float64"] = g
        for dtype in ("float32", "float64"):
            row[f"ratio_{dtype}"] = g["seconds"] / row[f"bpcheck_{dtype}"]["median_s"]
        rows.append(row)
        print(f"scaling: {row['arch']} ({p:,} params): bpcheck {row['bpcheck_float64']['median_s']:.3g} s, "
              f"gradcheck {g['seconds']:.3g} s{' (extrapolated)' if g['extrapolated'] else ''}", flush=True)
    return {"rows": rows, "cap_s": cap, "probe_s": probe_s, "batch": BATCH, "classes": CLASSES,
            "activation": "tanh", "loss": "softmax_cross_entropy", "eps": EPS}
