"""Section 3: the reference's forward + backward against torch and jax, and against NumPy's GEMM rate.

Network: 784-256-128-10, tanh hidden layers, identity logits, softmax cross-entropy, batch 128.
Each implementation computes the loss and the gradients of every parameter *and of the input*
(the reference always returns the input gradient, so torch's x requires grad and jax
differentiates with respect to x too):

- reference: ``reference.network.backprop`` called directly (NumPy; it also returns z, a, deltas);
- torch: the same MLP from ``torch.nn.functional``, autograd ``backward()``, grads reset each call;
- jax: ``jit(value_and_grad)`` compiled once, then timed with ``block_until_ready``.

FLOPs count the matrix products only: 3 per layer (z = a W^T, dW = delta^T a, delta W), each
2 B fan_in units. The GEMM rate is NumPy's (128x784) @ (784x256) in the same dtype; each
implementation's FLOP rate is given as a fraction of it. The GEMM and the three implementations
are timed in turn, round after round (``common.interleaved``), medians over the rounds, so a
change in the machine's load falls on all four alike. Run once with every library pinned
to one thread in a process confined to one CPU (XLA has no reliable thread-count flag; the
affinity is what keeps it on one core), and once at their default thread counts (separate
processes: the settings must be made before the libraries load).

If the reference is slower than torch, ``breakdown`` times the reference's own operations one
by one (the same NumPy calls as ``reference/network.py`` in the same order) to say where the
time goes.
"""
import time

import numpy as np

from benchmarks.common import interleaved, mlp_case, threads

ARCH = (784, [256, 128], 10)
BATCH = 128
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def mlp_flops(spec, batch):
    dims = [spec["input_dim"]] + [layer["units"] for layer in spec["layers"]]
    return sum(3 * 2 * batch * dims[i] * dims[i + 1] for i in range(len(dims) - 1))


def torch_step(case):
    import torch
    import torch.nn.functional as F
    dtype = getattr(torch, case.spec["dtype"])
    n = len(case.spec["layers"])
    W = [torch.tensor(case.params[f"layers.{i}.W"], dtype=dtype, requires_grad=True) for i in range(n)]
    b = [torch.tensor(case.params[f"layers.{i}.b"], dtype=dtype, requires_grad=True) for i in range(n)]
    x = torch.tensor(case.x, dtype=dtype, requires_grad=True)
    y = torch.tensor(case.y, dtype=torch.long)
    leaves = W + b + [x]

    def step():
        for t in leaves:
            t.grad = None
        a = x
        for i in range(n):
            z = F.linear(a, W[i], b[i])
            a = torch.tanh(z) if i < n - 1 else z
        loss = F.cross_entropy(a, y)
        loss.backward()
        return loss.item()
    return step


def jax_step(case):
    import jax
    import jax.numpy as jnp
    import optax
    jax.config.update("jax_enable_x64", True)
    n = len(case.spec["layers"])

    def loss(params, x, y):
        a = x
        for i in range(n):
            z = a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"]
            a = jnp.tanh(z) if i < n - 1 else z
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(a, y))

    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    params = {k: jnp.asarray(v) for k, v in case.params.items()}
    x, y = jnp.asarray(case.x), jnp.asarray(case.y)
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, x, y))
    compile_s = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(params, x, y))), compile_s


def breakdown(case, repeats=20):
    """Seconds per call of each kind of operation in the reference's forward + backward
    (tanh hidden layers, identity logits, softmax cross-entropy), in the reference's order."""
    from reference.activations import ACTIVATIONS
    from reference.losses import LOSSES
    spec, params, x, y = case.spec, case.params, case.x, case.y
    n = len(spec["layers"])
    acc = {}

    def clock(label, fn):
        start = time.perf_counter()
        out = fn()
        acc[label] = acc.get(label, 0.0) + time.perf_counter() - start
        return out

    for _ in range(repeats):
        a, zs, acts = x, [], []
        for i in range(n):
            W, b = params[f"layers.{i}.W"], params[f"layers.{i}.b"]
            z = clock("forward matmul a @ W.T", lambda: a @ W.T)
            z = clock("forward bias add", lambda: z + b)
            act, _ = ACTIVATIONS[spec["layers"][i]["activation"]]
            a = clock(f"activation {spec['layers'][i]['activation']}", lambda: act(z))
            zs.append(z)
            acts.append(a)
        _, grad_a = clock("loss (softmax cross-entropy + its gradient)", lambda: LOSSES[spec["loss"]](acts[-1], y))
        delta = None
        for i in reversed(range(n)):
            name = spec["layers"][i]["activation"]
            _, d_act = ACTIVATIONS[name]
            dz = clock(f"derivative d_{name}", lambda: d_act(zs[i]))
            if i == n - 1:
                delta = clock("BP1 product", lambda: grad_a * dz)
            else:
                up = clock("BP2 matmul delta @ W", lambda: delta @ params[f"layers.{i + 1}.W"])
                delta = clock("BP2 product", lambda: up * dz)
            a_prev = acts[i - 1] if i > 0 else x
            clock("BP3 sum over batch", lambda: delta.sum(axis=0))
            clock("BP4 matmul delta.T @ a", lambda: delta.T @ a_prev)
        clock("input gradient matmul delta @ W_0", lambda: delta @ params["layers.0.W"])
    total = sum(acc.values())
    return {"ops_ms": {k: v / repeats * 1e3 for k, v in sorted(acc.items(), key=lambda kv: -kv[1])},
            "total_ms": total / repeats * 1e3}


def forward_backward(params):
    """All measurements of section 3 in this process. ``one_core``: the process is confined to one
    CPU (affinity, set before torch and jax start their threads) and every library to one
    thread; otherwise their defaults."""
    import os
    if params.get("one_core") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import jax  # noqa: F401  (loaded before any clock)
    import torch
    if params.get("one_core"):
        torch.set_num_threads(1)
    from reference.network import backprop
    rounds, target = params.get("rounds", 15), params.get("target_s", 0.1)
    out = {"arch": "784-256-128-10", "batch": BATCH, "activation": "tanh", "loss": "softmax_cross_entropy",
           "one_core": bool(params.get("one_core")), "rows": {}}
    for dtype in ("float32", "float64"):
        case = mlp_case(*ARCH, BATCH, dtype, seed=1)
        flops = mlp_flops(case.spec, BATCH)
        rng = np.random.default_rng(0)
        a = rng.standard_normal((BATCH, 784)).astype(dtype)
        b = rng.standard_normal((784, 256)).astype(dtype)
        step, compile_s = jax_step(case)
        timings = interleaved({"gemm": lambda: a @ b,
                               "reference": lambda: backprop(case.spec, case.params, case.x, case.y),
                               "torch": torch_step(case), "jax": step}, rounds=rounds, target_s=target)
        gemm = timings.pop("gemm")
        gemm = {"shape": [BATCH, 784, 256], **gemm, "gflops": 2 * BATCH * 784 * 256 / gemm["median_s"] / 1e9}
        row = {"flops": flops, "gemm": gemm, "jax_compile_s": compile_s, "impl": {}}
        for name, t in timings.items():
            rate = flops / t["median_s"] / 1e9
            row["impl"][name] = {**t, "ms": t["median_s"] * 1e3, "gflops": rate, "fraction_of_gemm": rate / gemm["gflops"]}
        row["reference_over_torch"] = timings["reference"]["median_s"] / timings["torch"]["median_s"]
        row["reference_over_jax"] = timings["reference"]["median_s"] / timings["jax"]["median_s"]
        row["breakdown"] = breakdown(case, repeats=params.get("breakdown_repeats", 20))
        out["rows"][dtype] = row
    out["threads"] = threads()
    if hasattr(os, "sched_getaffinity"):
        out["threads"]["cpus_usable"] = len(os.sched_getaffinity(0))
    return out
