"""The tools people use today, on the same implementations and cases: gradcheck and check_grads.

``torch.autograd.gradcheck`` (its defaults, float64) gets the implementation
through a ``torch.autograd.Function`` whose forward returns the
implementation's loss and whose backward its gradients (every parameter
tensor); ``jax.test_util.check_grads`` (order 1, reverse mode) through a
``jax.custom_vjp`` whose primal and VJP call the implementation with
``jax.pure_callback``. Both compare against finite differences of the
implementation's own loss, in float64: they cannot see a wrong forward pass, a
float32-only bug, or anything their step and tolerances hide.

``compare_on_zoo`` runs bpcheck, gradcheck and check_grads on the same float64
cases for every zoo member; ``bpcheck selftest --baselines`` writes the table.
"""
import json
import time
from pathlib import Path

import numpy as np

from bpcheck.spec import param_shapes


def _keys(case):
    return list(param_shapes(case.spec))


def gradcheck_verdict(backprop, case):
    """"pass", "fail" or "error" (the implementation raised) of gradcheck on a float64 case."""
    import torch
    keys = _keys(case)

    class Implementation(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            with torch.enable_grad():        # an implementation may run torch's autograd itself
                result = backprop(case.spec, {k: t.detach().numpy().copy() for k, t in zip(keys, tensors)},
                                  case.x, case.y)
            ctx.grads = [torch.as_tensor(np.asarray(result["grads"][k], np.float64)) for k in keys]
            return torch.tensor(float(result["loss"]), dtype=torch.float64)

        @staticmethod
        def backward(ctx, grad_output):
            return tuple(grad_output * g for g in ctx.grads)

    inputs = tuple(torch.tensor(case.params[k], dtype=torch.float64, requires_grad=True) for k in keys)
    try:
        with np.errstate(all="ignore"):
            return "pass" if torch.autograd.gradcheck(Implementation.apply, inputs, raise_exception=False) else "fail"
    except Exception:
        return "error"


def check_grads_verdict(backprop, case):
    """"pass", "fail" or "error" of jax.test_util.check_grads on a float64 case."""
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads
    jax.config.update("jax_enable_x64", True)
    keys = _keys(case)
    scalar = jax.ShapeDtypeStruct((), jnp.float64)
    shapes = tuple(jax.ShapeDtypeStruct(s, jnp.float64) for s in param_shapes(case.spec).values())

    def call(*arrays):
        with np.errstate(all="ignore"):
            return backprop(case.spec, {k: np.asarray(a, np.float64) for k, a in zip(keys, arrays)}, case.x, case.y)

    def both(*arrays):
        result = call(*arrays)
        return (np.asarray(result["loss"], np.float64),
                tuple(np.asarray(result["grads"][k], np.float64) for k in keys))

    @jax.custom_vjp
    def f(*ps):
        return jax.pure_callback(lambda *a: np.asarray(call(*a)["loss"], np.float64), scalar, *ps)

    def fwd(*ps):
        return jax.pure_callback(both, (scalar, shapes), *ps)

    f.defvjp(fwd, lambda grads, g: tuple(g * gi for gi in grads))
    try:
        check_grads(f, tuple(jnp.asarray(case.params[k], jnp.float64) for k in keys), order=1, modes=["rev"])
        return "pass"
    except AssertionError:
        return "fail"
    except Exception:
        return "error"


def compare_on_zoo(n_cases=30, *, zoo=None, seed=None, out=Path("reports")):
    """For every zoo member: bpcheck's, gradcheck's and check_grads' verdicts on the same float64 cases
    (float64 cases of bpcheck's default draw, 40% from the edge families). Writes baselines.{json,md}."""
    from bpcheck.backends import PythonBackend
    from bpcheck.generate import generate_cases
    from bpcheck.judge import judge
    from bpcheck.report import DEFAULT_SEED
    from bpcheck.selftest import ZOO, _load_module, members
    drawn = [c for c in generate_cases(DEFAULT_SEED if seed is None else seed, 2) if c.spec["dtype"] == "float64"]
    edge = [c for c in drawn if c.meta["family"] != "plain"][:round(0.4 * n_cases)]
    cases = [c for c in drawn if c.meta["family"] == "plain"][:n_cases - len(edge)] + edge
    rows = []
    for name, path, expected in members(zoo or ZOO):
        fn = _load_module(path).backprop
        backend = PythonBackend(fn, name)
        tally = {tool: {"pass": 0, "fail": 0, "error": 0} for tool in ("bpcheck", "gradcheck", "check_grads")}
        seconds = dict.fromkeys(tally, 0.0)
        for case in cases:
            start = time.perf_counter()
            try:
                with np.errstate(all="ignore"):
                    tally["bpcheck"][judge(case, backend.run(case), who=name).verdict()] += 1
            except Exception:
                tally["bpcheck"]["error"] += 1
            seconds["bpcheck"] += time.perf_counter() - start
            for tool, verdict in (("gradcheck", gradcheck_verdict), ("check_grads", check_grads_verdict)):
                start = time.perf_counter()
                tally[tool][verdict(fn, case)] += 1
                seconds[tool] += time.perf_counter() - start
        rows.append({"member": name, "expected": expected["verdict"], "cases": len(cases), "tally": tally,
                     "seconds": {k: round(v, 2) for k, v in seconds.items()}})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps({"cases": len(cases), "members": rows}, indent=1) + "\n")
    (out / "baselines.md").write_text(markdown(rows, len(cases)))
    return rows


def flagged(tally):
    """A tool flags a member when any case fails or raises."""
    return tally["fail"] + tally["error"] > 0


def markdown(rows, n):
    bugs = [r for r in rows if r["expected"] == "fail"]
    ok = [r for r in rows if r["expected"] == "pass"]
    tools = ("bpcheck", "gradcheck", "check_grads")
    caught = {t: sum(flagged(r["tally"][t]) for r in bugs) for t in tools}
    false = {t: sum(flagged(r["tally"][t]) for r in ok) for t in tools}
    lines = ["# bpcheck, gradcheck and check_grads on the bug zoo", "",
             f"The same {n} float64 cases (from bpcheck's default draw: 60% plain, 40% from the edge "
             "families) for every member. A tool *flags* a member when a case fails or the implementation "
             "raises under it. gradcheck: `torch.autograd.gradcheck` defaults; check_grads: "
             "`jax.test_util.check_grads(order=1, modes=['rev'])`; bpcheck: `bpcheck.judge.judge`. "
             "Regenerate with `bpcheck selftest --baselines`.", "",
             "| | bpcheck | gradcheck | check_grads |", "|---|---|---|---|",
             f"| mutants flagged (of {len(bugs)}) | {caught['bpcheck']} | {caught['gradcheck']} | {caught['check_grads']} |",
             f"| correct members flagged (of {len(ok)}) | {false['bpcheck']} | {false['gradcheck']} | {false['check_grads']} |",
             "", "| member | expected | bpcheck fail/error | gradcheck fail/error | check_grads fail/error | "
             "seconds bpcheck / gradcheck / check_grads |", "|---|---|---|---|---|---|"]
    for r in rows:
        cell = lambda t: f"{r['tally'][t]['fail']}/{r['tally'][t]['error']}"  # noqa: E731
        s = r["seconds"]
        lines.append(f"| {r['member']} | {r['expected']} | {cell('bpcheck')} | {cell('gradcheck')} | "
                     f"{cell('check_grads')} | {s['bpcheck']} / {s['gradcheck']} / {s['check_grads']} |")
    return "\n".join(lines) + "\n"
