"""Section 1: verified cases per second, end to end, on the default case distribution.

Each function here runs in a fresh interpreter (``common.in_child``). The third-party
libraries the process uses (numpy, flint, mpmath, matplotlib; torch, jax and optax where
they run in this process) are imported before the clock starts, so no way is charged for
them; everything after -- generating the cases, bpcheck's own imports, spawning workers
(which import torch and jax themselves), JAX compiles, running, judging, writing reports --
is inside the timed region.
"""
import tempfile
import time
from collections import Counter

import numpy as np

from benchmarks.common import SEED, TreeMemory

NUMPY_MLP = "examples/numpy_mlp.py:backprop"


def _prelude(frameworks=True):
    """Pin threads as ``bpcheck report``/``validate`` do and import the libraries this process
    will use (untimed). ``frameworks``: torch and jax too -- only where the way runs them in this
    process (a parent that merely feeds worker processes does not load them, nor should its
    memory count them)."""
    from bpcheck.run.pool import set_single_thread
    set_single_thread()
    import matplotlib
    matplotlib.use("Agg")
    import flint  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import mpmath  # noqa: F401
    import scipy.special  # noqa: F401
    if frameworks:
        import jax
        import optax  # noqa: F401
        import torch
        torch.set_num_threads(1)
        jax.config.update("jax_enable_x64", True)


def _grid(params):
    """The subset of cells asked for (all by default), as generate_cases and run_validate take it."""
    return {k: params[k] for k in ("losses", "activations", "dtypes") if params.get(k)}


def _cases(params):
    from bpcheck.cases.generate import generate_cases
    return generate_cases(params.get("seed", SEED), params["examples"], **_grid(params))


def _summary(cases):
    dtypes = {}
    for c in cases:
        dtypes[c.spec["dtype"]] = dtypes.get(c.spec["dtype"], 0) + 1
    families = Counter(c.meta.get("family", "plain") for c in cases)
    return {"cases": len(cases), "dtypes": dtypes, "families": dict(sorted(families.items())),
            "params_median": float(np.median([sum(v.size for v in c.params.values()) for c in cases])),
            "params_max": int(max(sum(v.size for v in c.params.values()) for c in cases))}


# ---- bpcheck report ------------------------------------------------------------

def report_run(params):
    """``bpcheck report`` on the reference: generate, run_cases with torch and jax, write_reports.
    ``profile``: run under cProfile (one job) and return the top functions instead of a rate."""
    _prelude(frameworks=params["jobs"] == 1)
    from bpcheck.cases.generate import generate_cases
    from bpcheck.report.report import write_reports
    from bpcheck.run.pool import Candidate, run_cases
    jobs = params["jobs"]
    profiler = None
    if params.get("profile"):
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    with tempfile.TemporaryDirectory() as out, TreeMemory() as memory:
        t0 = time.perf_counter()
        cases = generate_cases(params.get("seed", SEED), params["examples"], **_grid(params))
        t1 = time.perf_counter()
        records = run_cases(cases, Candidate("reference"), out_dir=out, jobs=jobs, oracles=("torch", "jax"),
                            who="reference", progress=False)
        t2 = time.perf_counter()
        write_reports(records, out, meta={"seed": params.get("seed", SEED),
                                          "flags": {"examples": params["examples"], "jobs": jobs},
                                          "timing": {"generate_seconds": t1 - t0, "run_seconds": t2 - t1}})
        t3 = time.perf_counter()
    if profiler is not None:
        profiler.disable()
    status = {s: sum(r["status"] == s for r in records) for s in ("ok", "unsupported", "error")}
    failing = sum(any(row["class"] in ("bug", "precision") for row in r["rows"]) for r in records)
    out = {"jobs": jobs, **_summary(cases), "status": status, "candidate_failing_cases": failing,
           "seconds": t3 - t0, "cases_per_s": len(cases) / (t3 - t0),
           "phases_s": {"generate": t1 - t0, "run": t2 - t1, "write_reports": t3 - t2},
           "memory": memory.result()}
    if profiler is not None:
        out["profile"] = _top_functions(profiler, exclude=("reference/",), limit=params.get("limit", 25))
    return out


def _top_functions(profiler, *, exclude, limit):
    """bpcheck's and the oracles' functions by cumulative time; every function (the candidate's
    own, ``exclude``, and the import machinery left out) by cumulative and by own time."""
    import pstats
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        where = _short(path)
        if any(e in path for e in exclude) or where.startswith("<frozen") or "importlib" in where:
            continue
        rows.append({"function": f"{where}:{line}({name})", "calls": calls, "cumulative_s": round(cumtime, 3),
                     "own_s": round(tottime, 3)})
    ours = [r for r in rows if r["function"].startswith(("bpcheck/", "oracles/"))]
    by_cum = sorted(ours, key=lambda r: -r["cumulative_s"])[:limit]
    everything = sorted(rows, key=lambda r: -r["cumulative_s"])[:limit]
    by_own = sorted(rows, key=lambda r: -r["own_s"])[:limit]
    candidate = sum(tt for (path, _, _), (_, _, tt, _, _) in stats.stats.items() if any(e in path for e in exclude))
    return {"total_s": round(total, 3), "candidate_own_s": round(candidate, 3),
            "by_cumulative": by_cum, "by_cumulative_all": everything, "by_own_time": by_own}


def _short(path):
    """A path relative to the project or to site-packages: no machine paths in the results."""
    import re
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    stdlib = re.search(r"/lib/python3\.\d+/(.*)", path)
    if stdlib:
        return stdlib.group(1)
    for top in ("bpcheck/", "oracles/", "reference/", "benchmarks/", "examples/"):
        if "/" + top in path:
            return top + path.split("/" + top, 1)[1]
    return path


# ---- bpcheck validate ----------------------------------------------------------

def validate_run(params):
    """``bpcheck validate`` (run_validate, default options otherwise) on a correct implementation."""
    _prelude(frameworks=False)
    from bpcheck.cli.validate import run_validate
    with tempfile.TemporaryDirectory() as out, TreeMemory() as memory:
        t0 = time.perf_counter()
        verdict = run_validate(params["target"], jobs=params["jobs"], in_process=params.get("in_process", False),
                               examples=params["examples"], out_dir=out, progress=False, **_grid(params),
                               **({"min_cases": params["min_cases"]} if "min_cases" in params else {}))
        seconds = time.perf_counter() - t0
    return {"target": params["target"], "jobs": params["jobs"], "in_process": params.get("in_process", False),
            "cases": verdict.get("cases"), "checked": verdict.get("checked"), "exit_code": verdict["exit_code"],
            "failed": verdict.get("failed"), "seconds": seconds, "cases_per_s": verdict.get("cases", 0) / seconds,
            "timing": verdict.get("timing"), "memory": memory.result()}


# ---- the naive way -------------------------------------------------------------

def _jax_network(spec):
    """The case's network and loss written plainly in jax.numpy (contract conventions)."""
    import jax
    import jax.numpy as jnp
    import optax
    acts = {"identity": lambda z: z, "relu": jax.nn.relu, "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),
            "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "softplus": jax.nn.softplus, "elu": jax.nn.elu,
            "gelu": lambda z: jax.nn.gelu(z, approximate=False),
            "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True), "silu": jax.nn.silu}
    losses = {"sse": lambda a, y: jnp.sum((a - y) ** 2), "half_sse": lambda a, y: 0.5 * jnp.sum((a - y) ** 2),
              "mse": lambda a, y: jnp.mean((a - y) ** 2),
              "quadratic": lambda a, y: jnp.sum((a - y) ** 2) / (2 * a.shape[0]),
              "binary_cross_entropy": lambda a, y: -jnp.mean(y * jnp.log(a) + (1 - y) * jnp.log1p(-a)),
              "bce_with_logits": lambda z, y: jnp.mean(optax.sigmoid_binary_cross_entropy(z, y)),
              "softmax_cross_entropy": lambda z, y: jnp.mean(
                  optax.softmax_cross_entropy_with_integer_labels(z, y))}
    layers = [acts[layer["activation"]] for layer in spec["layers"]]
    loss = losses[spec["loss"]]

    def network(params, x, y):
        a = x
        for i, f in enumerate(layers):
            a = f(a @ params[f"layers.{i}.W"].T + params[f"layers.{i}.b"])
        return loss(a, y)
    return network


def naive_run(params):
    """Per case: the reference, torch, a fresh jax.jit(value_and_grad) (compiled every time),
    the 50-digit mpmath arbiter as truth, and bpcheck's judge on all three. One process."""
    _prelude()
    import jax

    from bpcheck.core.spec import validate_result
    from bpcheck.judge.judge import judge
    from oracles import numeric, torch_oracle
    from reference import network
    t0 = time.perf_counter()
    cases = _cases(params)
    verdicts = {"pass": 0, "fail": 0, "error": 0}
    for case in cases:
        try:
            args = (case.spec, case.params, case.x, case.y)
            truth = numeric.backprop(*args)
            ref = validate_result(network.backprop(*args), case, who="reference")
            tor = validate_result(torch_oracle.backprop(*args), case, who="torch")
            step = jax.jit(jax.value_and_grad(_jax_network(case.spec), argnums=(0, 1)))   # no cache: a new function
            (loss, (grads, gx)) = step(case.params, case.x, case.y)
            jx = validate_result({"loss": float(loss), "grads": {k: np.asarray(v) for k, v in grads.items()},
                                  "input_grad": np.asarray(gx)}, case, who="jax")
            j = judge(case, ref, who="reference", truth=truth)
            judge(case, tor, who="torch", truth=truth, bounds=j.bounds)
            judge(case, jx, who="jax", truth=truth, bounds=j.bounds)
            verdicts[j.verdict()] += 1
        except Exception:     # a case the plain jax network or the arbiter cannot take: counted, not timed out
            verdicts["error"] += 1
    seconds = time.perf_counter() - t0
    return {**_summary(cases), "verdicts": verdicts, "seconds": seconds, "cases_per_s": len(cases) / seconds}


# ---- torch.autograd.gradcheck and jax.test_util.check_grads ----------------------

def _implementation(target):
    from bpcheck.run.backends import load_function
    return load_function(target)


def gradcheck_run(params):
    """torch.autograd.gradcheck (defaults, float64) through a torch.autograd.Function whose
    forward is the implementation's loss and whose backward its gradients (bpcheck.proof.baselines)."""
    return _baseline_run(params, "gradcheck_verdict")


def check_grads_run(params):
    """jax.test_util.check_grads (order 1, modes rev) through a jax.custom_vjp calling the NumPy
    implementation with jax.pure_callback (bpcheck.proof.baselines); float64."""
    return _baseline_run(params, "check_grads_verdict")


def _baseline_run(params, name):
    _prelude()
    from bpcheck.proof import baselines
    verdict = getattr(baselines, name)
    backprop = _implementation(params.get("target", NUMPY_MLP))
    t0 = time.perf_counter()
    cases = [c.astype("float64") for c in _cases(params)]
    outcome = {"pass": 0, "fail": 0, "error": 0}
    for case in cases:
        outcome[verdict(backprop, case)] += 1
    seconds = time.perf_counter() - t0
    return {**_summary(cases), "outcome": outcome, "seconds": seconds, "cases_per_s": len(cases) / seconds}
