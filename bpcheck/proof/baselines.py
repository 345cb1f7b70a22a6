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

from bpcheck.core.spec import param_shapes


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
                                  case.x.copy(), case.y.copy())    # an implementation may overwrite them
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
            return backprop(case.spec, {k: np.array(a, np.float64) for k, a in zip(keys, arrays)},
                            case.x.copy(), case.y.copy())                   # an implementation may overwrite them

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


TOOLS = ("bpcheck", "gradcheck", "check_grads")


def baseline_cases(examples=1, *, seed=None, losses=None, activations=None):
    """The float64 cases of bpcheck's default draw: ``examples`` plain cases per loss x activation
    cell and the edge families' share on top (``bpcheck.cases.generate.generate_cases``)."""
    from bpcheck.cases.generate import generate_cases
    from bpcheck.core.spec import ACTIVATIONS, LOSSES
    from bpcheck.report.report import DEFAULT_SEED
    return generate_cases(DEFAULT_SEED if seed is None else seed, examples, dtypes=["float64"],
                          losses=losses or LOSSES, activations=activations or ACTIVATIONS)


def member_verdicts(path, name, cases):
    """Each tool's verdict on each case: {"bpcheck": "pff...", ...} ("p" pass, "f" fail, "e" raised),
    and the seconds each tool took. bpcheck's is ``bpcheck.judge.judge.judge`` with the case-level findings
    (the state check on the first case and on failing ones). Raises ValueError for a member that
    cannot be loaded."""
    from bpcheck.judge.judge import judge
    from bpcheck.run.backends import PythonBackend, load_function
    fn = load_function(f"{path}:backprop")
    backend = PythonBackend(fn, name)
    verdicts, seconds = {t: [] for t in TOOLS}, dict.fromkeys(TOOLS, 0.0)
    for n, case in enumerate(cases):
        start = time.perf_counter()
        try:                    # findings included; the state check on the first case and failing ones
            with np.errstate(all="ignore"):
                verdicts["bpcheck"].append(judge(case, backend.run(case), who=name, rerun=backend.run,
                                                 rerun_when="always" if n == 0 else "failing").verdict())
        except Exception:
            verdicts["bpcheck"].append("error")
        seconds["bpcheck"] += time.perf_counter() - start
        for tool, verdict in (("gradcheck", gradcheck_verdict), ("check_grads", check_grads_verdict)):
            start = time.perf_counter()
            verdicts[tool].append(verdict(fn, case))
            seconds[tool] += time.perf_counter() - start
    return {"verdicts": {t: "".join(v[0] for v in vs) for t, vs in verdicts.items()},
            "seconds": {t: round(v, 2) for t, v in seconds.items()}}


def _member_job(args):
    from bpcheck.run.pool import set_single_thread
    set_single_thread()
    path, name, case_docs = args
    from bpcheck.core.records import case_from_json
    return member_verdicts(path, name, [case_from_json(d) for d in case_docs])


def compare_on_zoo(examples=1, *, zoo=None, seed=None, out=Path("reports"), jobs=1, losses=None,
                   activations=None):
    """bpcheck's, gradcheck's and check_grads' verdicts for every zoo member on the same float64 cases
    (``baseline_cases``), members spread over ``jobs`` processes. Writes baselines.{json,md}; returns
    the summary dict (``summarise``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bpcheck.proof.zoo import ZOO, members
    from bpcheck.core.records import case_to_json
    cases = baseline_cases(examples, seed=seed, losses=losses, activations=activations)
    found = members(zoo or ZOO)
    docs = [case_to_json(c) for c in cases]
    jobs_args = [(str(path), name, docs) for name, path, _ in found]
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_member_job, jobs_args))
    else:
        results = [member_verdicts(path, name, cases) for name, path, _ in found]
    rows = [{"member": name, "expected": expected["verdict"], **result}
            for (name, _, expected), result in zip(found, results)]
    summary = summarise(rows, cases)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "baselines.md").write_text(markdown(summary))
    return summary


def summarise(rows, cases):
    """Per tool: mutants flagged (any case fails or raises), mutants caught on a case where the same
    tool passes every correct member (a discriminating catch), correct members flagged and the
    families of the cases that flagged them."""
    bugs = [r for r in rows if r["expected"] == "fail"]
    ok = [r for r in rows if r["expected"] == "pass"]
    families = [c.meta.get("family", "plain") for c in cases]
    tools = {}
    for t in TOOLS:
        clean = [all(r["verdicts"][t][k] == "p" for r in ok) for k in range(len(cases))]
        alarm_families = sorted({families[k] for r in ok for k, v in enumerate(r["verdicts"][t]) if v != "p"})
        tools[t] = {"mutants_flagged": sum("f" in r["verdicts"][t] or "e" in r["verdicts"][t] for r in bugs),
                    "mutants_caught_cleanly": sum(any(v != "p" and clean[k] for k, v in enumerate(r["verdicts"][t]))
                                                  for r in bugs),
                    "correct_flagged": sum(any(v != "p" for v in r["verdicts"][t]) for r in ok),
                    "correct_alarm_cases": sum(v != "p" for r in ok for v in r["verdicts"][t]),
                    "alarm_families": alarm_families,
                    "seconds": round(sum(r["seconds"][t] for r in rows), 1)}
    return {"cases": len(cases), "case_ids": [c.id for c in cases], "mutants": len(bugs), "correct": len(ok),
            "tools": tools, "members": rows}


def markdown(summary):
    t, n = summary["tools"], summary["cases"]
    row = lambda label, key: f"| {label} | " + " | ".join(str(t[k][key]) for k in TOOLS) + " |"  # noqa: E731
    lines = ["# bpcheck, gradcheck and check_grads on the bug zoo", "",
             f"The same {n} float64 cases for every member: bpcheck's default draw in float64 (one plain "
             "case per loss × activation cell, the edge families' 40% on top). A tool *flags* a member when "
             "a case fails or the implementation raises under it; it *catches* a mutant cleanly when the "
             "mutant fails on a case where the same tool passes every correct member. gradcheck: "
             "`torch.autograd.gradcheck` defaults; check_grads: `jax.test_util.check_grads(order=1, "
             "modes=['rev'])`, each on the implementation's loss and gradients; bpcheck: `bpcheck.judge.judge.judge`. "
             "Regenerate with `bpcheck selftest --baselines 1`.", "",
             "| | bpcheck | gradcheck | check_grads |", "|---|---|---|---|",
             row(f"mutants flagged (of {summary['mutants']})", "mutants_flagged"),
             row(f"mutants caught cleanly (of {summary['mutants']})", "mutants_caught_cleanly"),
             row(f"correct members flagged (of {summary['correct']})", "correct_flagged"),
             row(f"failing verdicts on correct members (of {summary['correct'] * n})", "correct_alarm_cases"),
             "| families of those cases | " + " | ".join(", ".join(t[k]["alarm_families"]) or "—" for k in TOOLS)
             + " |",
             row("seconds, all members", "seconds"),
             "", "| member | expected | bpcheck fail/error | gradcheck fail/error | check_grads fail/error | "
             "seconds bpcheck / gradcheck / check_grads |", "|---|---|---|---|---|---|"]
    for r in summary["members"]:
        cell = lambda k: f"{r['verdicts'][k].count('f')}/{r['verdicts'][k].count('e')}"  # noqa: E731
        s = r["seconds"]
        lines.append(f"| {r['member']} | {r['expected']} | {cell('bpcheck')} | {cell('gradcheck')} | "
                     f"{cell('check_grads')} | {s['bpcheck']} / {s['gradcheck']} / {s['check_grads']} |")
    return "\n".join(lines) + "\n"
