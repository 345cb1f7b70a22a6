"""bpcheck beside the tools people use today, on the op zoo and on correct layers: gradcheck and check_grads.

    python -m bpcheck.opcheck.baselines --out reports [--seed 0]

Implementations: every member of ``tests/meta/op_zoo`` (46 CS231n-style layers, each with one slip and
its ``EXPECTED``) and the correct ones, ``reference/layers.py`` and ``examples/cs231n_layers.py``, for
every op of the catalog with a CS231n signature. Each implementation is judged by

- bpcheck: ``check_op(op, layers=module, extended=True, seed=seed)`` -- its default covering set (every
  edge family, 4 cases each, both dtypes); and, case for case, on the same cases as the other tools
  (``judge_case`` on ``cases(op, (dtype,), per_family=1, seed=seed)``);
- ``torch.autograd.gradcheck`` at its defaults (eps 1e-6, atol 1e-5, rtol 1e-3), through a
  ``torch.autograd.Function`` whose forward calls the NumPy forward on the tensors' values (keeping the
  cache) and whose backward calls the NumPy backward with the cotangent; constants (labels, indices)
  and hyper-parameters are closed over, not differentiated;
- ``jax.test_util.check_grads(f, args, order=1, modes=["rev"])`` at its defaults, through a
  ``jax.custom_vjp`` whose primal and backward call the NumPy code with ``jax.pure_callback`` (the
  backward re-runs the forward on its residuals, the inputs, for the cache).

The tools other than bpcheck's default run see the covering set with one case per family, in float64
and in float32: every edge family (ties, large means, repeated indices, ...) is in front of every tool.
gradcheck documents that it is meant for float64; it is run in float32 as well, at the same defaults,
to record what happens. A tool *catches* a member when a case fails or the implementation raises
under it; on a correct implementation that is a *false alarm*. A catch is *clean* when it is made on
a case where the same tool passes the correct implementations of the op (the cases of an op, dtype and
seed are the same for every implementation); a catch that is not clean is noise -- in float32
gradcheck fails the correct layers too. Every module is loaded afresh for
each tool and dtype, so a member with state (a gradient buffer kept between calls) meets every tool
in the same condition.

Writes ``OUT/ops_baselines.json`` and ``OUT/ops_baselines.md`` (``bpcheck.opcheck.baselines_markdown``);
a line per result (implementation x tool x dtype) streams to ``OUT/ops_baselines.jsonl`` as it is
computed. The two frameworks' checkers are ``bpcheck.opcheck.framework_checks``.
"""
import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np

from bpcheck import ops
from bpcheck.opcheck import candidates as cand
from bpcheck.ops.cases import cases
from bpcheck.opcheck.check import check_op, judge_case
from bpcheck.opcheck.baselines_markdown import DTYPES, TOOLS, markdown, rel_path, summarise
from bpcheck.opcheck.framework_checks import check_grads_fn, enable_x64, gradcheck_fn
from bpcheck.opcheck.report import LAYERS, ROOT

__all__ = ["compare", "implementations", "gradcheck_verdict", "check_grads_verdict", "bpcheck_verdict",
           "summarise", "markdown", "main", "TOOLS", "DTYPES", "ZOO"]

ZOO = ROOT / "tests" / "meta" / "op_zoo"


# ---- the implementations ------------------------------------------------------------------------

def _edge_only(shows_when):
    """A slip that shows only on an edge of the input space: its ``shows_when`` is not "always" (nor
    "always" qualified, as in "always in training mode", which every drawn case of the op is)."""
    return not shows_when.startswith("always")


def implementations(members=None, ops_=None, correct=tuple(LAYERS), zoo=ZOO):
    """The implementations compared: dicts with name, path, op, kind ("mutant" or "correct") and, for a
    mutant, its EXPECTED (tensor, slip, shows_when) and whether the slip is edge-only. ``members``:
    member names (``bug_...``, with or without ``.py``; None for all); ``ops_``: restrict both kinds to
    these ops (None for all); ``correct``: which correct implementations (keys of
    ``bpcheck.opcheck.report.LAYERS``: "reference", "second")."""
    found = []
    wanted = None if members is None else {Path(m).stem for m in members}
    for path in sorted(Path(zoo).glob("bug_*.py")):
        if wanted is not None and path.stem not in wanted:
            continue
        expected = cand.load_module(path).EXPECTED
        if ops_ is not None and expected["op"] not in ops_:
            continue
        found.append({"name": path.stem, "path": path, "op": expected["op"], "kind": "mutant",
                      "tensor": expected["tensor"], "slip": expected["slip"], "shows_when": expected["shows_when"],
                      "edge_only": _edge_only(expected["shows_when"])})
    if wanted is not None and wanted - {f["name"] for f in found} and ops_ is None:
        raise ValueError(f"no such zoo members: {', '.join(sorted(wanted - {f['name'] for f in found}))}")
    for who in correct:
        path = LAYERS[who]
        module = cand.load_module(path)
        for name, record in ops.REGISTRY.items():
            if record.cs231n is None or (ops_ is not None and name not in ops_):
                continue
            fwd, bwd = record.cs231n[:2]
            if hasattr(module, fwd) and (bwd is None or hasattr(module, bwd)):
                found.append({"name": rel_path(path), "path": path, "op": name, "kind": "correct"})
    return found


# ---- one case under each tool ---------------------------------------------------------------------

def _layer(op, module):
    """(forward, backward or None, call, grads) of ``op``'s CS231n signature in ``module``."""
    fwd_name, bwd_name, invoke, unpack = op.cs231n[:4]
    fwd = getattr(module, fwd_name)
    return fwd, (getattr(module, bwd_name) if bwd_name else None), invoke, unpack


def _numpy_layer(op, module, case):
    """``forward(arrays) -> (out, state)`` and ``backward(dout, state) -> {input: gradient or None}`` on
    NumPy arrays in the case's dtype; constants and hyper-parameters from the case, fresh copies each call.
    For a loss whose forward returns ``(loss, dx)`` (CS231n's softmax_loss) the state is dx and the
    backward scales it by the cotangent."""
    fwd, bwd, invoke, unpack = _layer(op, module)
    names = list(case.inputs)

    def forward(arrays):
        a = {k: np.array(v) for k, v in zip(names, arrays)}
        c = {k: np.array(v) for k, v in case.constants.items()}
        if bwd is None:
            out, *rest = invoke(fwd, a, c, dict(case.hyper))
            return out, unpack(rest)
        out, cache = invoke(fwd, a, c, dict(case.hyper))
        return out, cache

    def backward(dout, state):
        if bwd is None:
            return {k: None if g is None else np.asarray(g) * dout for k, g in state.items()}
        return unpack(cand.cs231n_backward(op, bwd, dout, state))

    return names, forward, backward


def gradcheck_verdict(op, module, case):
    """("p" | "f" | "e", message): ``torch.autograd.gradcheck`` at its defaults on one case, through a
    ``torch.autograd.Function`` around ``module``'s CS231n forward and backward ("e": it raised)."""
    names, forward, backward = _numpy_layer(op, module, case)
    return gradcheck_fn(names, forward, backward, case.inputs, case.dtype)


def check_grads_verdict(op, module, case):
    """("p" | "f" | "e", message): ``jax.test_util.check_grads(order=1, modes=["rev"])`` at its defaults
    on one case, through a ``jax.custom_vjp`` whose primal and VJP call ``module`` with
    ``jax.pure_callback`` ("f": AssertionError; "e": anything else raised)."""
    names, forward, backward = _numpy_layer(op, module, case)
    return check_grads_fn(names, forward, backward, case.inputs, case.dtype, np.shape(case.cotangent))


def bpcheck_verdict(op, module, case):
    """("p" | "f" | "e" | "u", message): bpcheck's judgement of one case (``judge_case``); tie, kink and
    convention classes pass; "e": the layer raised; "u": declined."""
    rows, cls = judge_case(op, cand.cs231n(module, extended=True), case)
    if cls == "unsupported":
        return "u", rows[0]["message"]
    if cls != "bug":
        return "p", None
    bad = next(r for r in rows if r["status"] == "bug")
    if bad["tensor"] == "call":
        return "e", bad["message"][:200]
    return "f", f"{bad['tensor']} wrong"


VERDICTS = {"bpcheck": bpcheck_verdict, "gradcheck": gradcheck_verdict, "check_grads": check_grads_verdict}


# ---- a run ----------------------------------------------------------------------------------------

def _check_op_result(impl, op, dtypes, seed):
    start = time.perf_counter()
    report = check_op(op, layers=cand.load_module(impl["path"]), extended=True, seed=seed, dtypes=dtypes,
                      name=impl["name"])
    first = None
    if report.first is not None:
        first = next((r["tensor"] for r in report.first["rows"] if r["status"] == "bug"), None)
    return {"tool": "bpcheck", "dtype": "+".join(dtypes), "setting": "check_op", "verdict": report.verdict,
            "cases": report.cases, "failing": report.failures, "first_wrong": first,
            "flagged": report.verdict in ("fail", "error"), "seconds": round(time.perf_counter() - start, 3)}


def _tool_result(impl, op, tool, dtype, seed):
    module = cand.load_module(impl["path"])          # fresh: no state carried between tools or dtypes
    start = time.perf_counter()
    verdicts, families, messages = [], [], []
    for case in cases(op, (dtype,), 1, seed):
        v, message = VERDICTS[tool](op, module, case)
        verdicts.append(v)
        families.append(case.family)
        if message and v != "p" and len(messages) < 3:
            messages.append(f"{case.family}: {message}")
    verdicts = "".join(verdicts)
    return {"tool": tool, "dtype": dtype, "setting": "same_cases", "verdicts": verdicts, "families": families,
            "cases": len(verdicts), "failing": verdicts.count("f"), "raised": verdicts.count("e"),
            "flagged": "f" in verdicts or "e" in verdicts,
            "flagged_families": [fam for fam, v in zip(families, verdicts) if v in "fe"],
            "messages": messages, "seconds": round(time.perf_counter() - start, 3)}


def compare(out=Path("reports"), *, seed=0, members=None, ops_=None, correct=tuple(LAYERS), dtypes=DTYPES,
            tools=TOOLS, echo=print):
    """Run every tool on every implementation (restricted by ``members``, ``ops_``, ``correct`` as in
    ``implementations``; ``dtypes``, ``tools`` to run). Streams OUT/ops_baselines.jsonl, writes
    OUT/ops_baselines.json and .md, and returns the summary (``summarise``)."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    found = implementations(members, ops_, correct)
    if "gradcheck" in tools:             # imported before the first result's clock starts
        importlib.import_module("torch")
    if "check_grads" in tools:
        enable_x64()
        importlib.import_module("jax.test_util")
    rows = []
    with open(out / "ops_baselines.jsonl", "w") as stream:
        for n, impl in enumerate(found, 1):
            op = ops.get(impl["op"])
            row = {k: v for k, v in impl.items() if k != "path"}
            row["results"] = []
            runs = ([lambda: _check_op_result(impl, op, tuple(dtypes), seed)] if "bpcheck" in tools else []) + [
                (lambda t=tool, d=dtype: _tool_result(impl, op, t, d, seed)) for tool in tools for dtype in dtypes]
            for run in runs:
                result = run()
                row["results"].append(result)
                line = {"name": impl["name"], "op": impl["op"], "kind": impl["kind"], **result}
                stream.write(json.dumps(line) + "\n")
                stream.flush()
            rows.append(row)
            echo(f"  {n}/{len(found)} {impl['name']} {impl['op']}: " + ", ".join(
                f"{r['tool']} {r['dtype']} {'flagged' if r['flagged'] else 'passed'}" for r in row["results"]))
    summary = summarise(rows, seed=seed, dtypes=dtypes, tools=tools,
                        selection={"members": None if members is None else list(members),
                                   "ops": None if ops_ is None else list(ops_), "correct": list(correct)},
                        seconds=time.perf_counter() - start)
    (out / "ops_baselines.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "ops_baselines.md").write_text(markdown(summary))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bpcheck.opcheck.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports", help="directory for ops_baselines.{json,jsonl,md}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", nargs="*", help="zoo members to run (default: all)")
    parser.add_argument("--ops", nargs="*", help="restrict to these ops (default: all)")
    parser.add_argument("--correct", nargs="*", default=list(LAYERS), choices=list(LAYERS),
                        help="correct implementations to run (default: all)")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = parser.parse_args(argv)
    summary = compare(args.out, seed=args.seed, members=args.members, ops_=args.ops, correct=tuple(args.correct),
                      dtypes=tuple(args.dtypes))
    for t in summary["summary"]:
        print(f"{t['key']:19} caught {t['mutants_caught']}/{t['mutants']} ({t['mutants_caught_cleanly']} cleanly; "
              f"edge-only {t['edge_only_caught']}/{t['edge_only']}, {t['edge_only_caught_cleanly']} cleanly), "
              f"false alarms {t['false_alarms']}/{t['correct_pairs']}, {t['seconds']} s")
    print(f"{summary['seconds']} s")


if __name__ == "__main__":
    main()
