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

Writes ``OUT/ops_baselines.json`` and ``OUT/ops_baselines.md``; a line per result (implementation x
tool x dtype) streams to ``OUT/ops_baselines.jsonl`` as it is computed.
"""
import argparse
import importlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

from bpcheck import ops
from bpcheck.opcheck import candidates as cand
from bpcheck.ops.cases import cases
from bpcheck.opcheck.check import check_op, judge_case
from bpcheck.opcheck.report import LAYERS, ROOT

__all__ = ["compare", "implementations", "gradcheck_verdict", "check_grads_verdict", "bpcheck_verdict",
           "gradcheck_fn", "check_grads_fn", "mark_clean",
           "summarise", "markdown", "main", "TOOLS", "DTYPES", "ZOO"]

ZOO = ROOT / "tests" / "meta" / "op_zoo"
TOOLS = ("bpcheck", "gradcheck", "check_grads")
DTYPES = ("float64", "float32")
REGENERATE = "python -m bpcheck.opcheck.baselines --out reports --seed {seed}"


# ---- the implementations ------------------------------------------------------------------------

def _edge_only(shows_when):
    """A slip that shows only on an edge of the input space: its ``shows_when`` is not "always" (nor
    "always" qualified, as in "always in training mode", which every drawn case of the op is)."""
    return not shows_when.startswith("always")


def _rel(path):
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


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
                found.append({"name": _rel(path), "path": path, "op": name, "kind": "correct"})
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


def _describe(exc):
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"


def gradcheck_verdict(op, module, case):
    """("p" | "f" | "e", message): ``torch.autograd.gradcheck`` at its defaults on one case, through a
    ``torch.autograd.Function`` around ``module``'s CS231n forward and backward ("e": it raised)."""
    names, forward, backward = _numpy_layer(op, module, case)
    return gradcheck_fn(names, forward, backward, case.inputs, case.dtype)


def gradcheck_fn(names, forward, backward, inputs, dtype):
    """("p" | "f" | "e", message): ``torch.autograd.gradcheck`` at its defaults on ``inputs`` ({name: array}),
    through a ``torch.autograd.Function`` whose forward is ``forward(arrays) -> (out, state)`` and whose
    backward is ``backward(dout, state) -> {name: gradient or None}`` (NumPy, in ``dtype``)."""
    import torch
    dtype = np.dtype(dtype)

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            out, ctx.state = forward([t.detach().numpy() for t in tensors])
            return torch.from_numpy(np.array(out, dtype))

        @staticmethod
        def backward(ctx, grad_output):
            grads = backward(grad_output.detach().numpy().copy(), ctx.state)
            return tuple(None if grads.get(k) is None else torch.from_numpy(np.array(grads[k], dtype)) for k in names)

    tensors = tuple(torch.from_numpy(np.array(inputs[k])).requires_grad_(True) for k in names)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")      # "not double precision": the float32 runs are on purpose
            ok = torch.autograd.gradcheck(Layer.apply, tensors, raise_exception=False)
        return ("p" if ok else "f"), None
    except Exception as exc:
        return "e", _describe(exc)


def _enable_x64():
    import jax
    jax.config.update("jax_enable_x64", True)     # before any array is made: float64 stays float64
    return jax


def check_grads_verdict(op, module, case):
    """("p" | "f" | "e", message): ``jax.test_util.check_grads(order=1, modes=["rev"])`` at its defaults
    on one case, through a ``jax.custom_vjp`` whose primal and VJP call ``module`` with
    ``jax.pure_callback`` ("f": AssertionError; "e": anything else raised)."""
    names, forward, backward = _numpy_layer(op, module, case)
    return check_grads_fn(names, forward, backward, case.inputs, case.dtype, np.shape(case.cotangent))


def check_grads_fn(names, forward, backward, inputs, dtype, out_shape):
    """("p" | "f" | "e", message): ``jax.test_util.check_grads(order=1, modes=["rev"])`` at its defaults on
    ``inputs`` ({name: array}), through a ``jax.custom_vjp`` whose primal (output of shape ``out_shape``) and
    VJP call ``forward`` and ``backward`` (as in ``gradcheck_fn``) with ``jax.pure_callback``; the VJP re-runs
    the forward on its residuals, the inputs."""
    jax = _enable_x64()
    import jax.numpy as jnp
    from jax.test_util import check_grads
    dtype = np.dtype(dtype)
    out_shape = jax.ShapeDtypeStruct(tuple(out_shape), dtype)
    in_shapes = tuple(jax.ShapeDtypeStruct(np.shape(inputs[k]), dtype) for k in names)

    def primal(*arrays):
        with np.errstate(all="ignore"):
            return np.array(forward(arrays)[0], dtype)

    def vjp(dout, *arrays):
        with np.errstate(all="ignore"):
            grads = backward(np.array(dout, dtype), forward(arrays)[1])
            return tuple(np.zeros(np.shape(inputs[k]), dtype) if grads.get(k) is None else np.array(grads[k], dtype)
                         for k in names)

    @jax.custom_vjp
    def f(*xs):
        return jax.pure_callback(primal, out_shape, *xs)

    f.defvjp(lambda *xs: (jax.pure_callback(primal, out_shape, *xs), xs),
             lambda xs, g: jax.pure_callback(vjp, in_shapes, g, *xs))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_grads(f, tuple(jnp.asarray(inputs[k]) for k in names), order=1, modes=["rev"])
        return "p", None
    except AssertionError as exc:
        return "f", _describe(exc)
    except Exception as exc:
        return "e", _describe(exc)


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
        _enable_x64()
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


def _columns(dtypes, tools):
    """(key, tool, setting label, dtype) of each summary row, in table order."""
    cols = []
    if "bpcheck" in tools:
        cols.append(("bpcheck check_op", "bpcheck", "check_op", "+".join(dtypes)))
    for tool in tools:
        for dtype in dtypes:
            cols.append((f"{tool} {dtype}", tool, "same_cases", dtype))
    return cols


def _result(row, tool, setting, dtype):
    return next(r for r in row["results"] if r["tool"] == tool and r["setting"] == setting and r["dtype"] == dtype)


def mark_clean(mutants, correct, columns):
    """Set ``cleanly`` on each mutant's results: flagged where the same tool passes the correct code. On
    the shared cases that is per case (the cases of an op, dtype and seed are the same for every
    implementation): a case the mutant fails on which every correct implementation of the op passes
    under the same tool, or one on which the mutant raises and no correct implementation does; for
    ``check_op`` (its own cases): flagged, and no correct implementation of the op flagged. None when
    the run has no correct implementation of the op."""
    for _, tool, setting, dtype in columns:
        for r in mutants:
            res = _result(r, tool, setting, dtype)
            controls = [_result(c, tool, setting, dtype) for c in correct if c["op"] == r["op"]]
            if not controls:
                res["cleanly"] = None
            elif setting == "check_op":
                res["cleanly"] = res["flagged"] and not any(c["flagged"] for c in controls)
            else:
                res["cleanly"] = any((v == "f" and all(c["verdicts"][k] == "p" for c in controls))
                                     or (v == "e" and all(c["verdicts"][k] != "e" for c in controls))
                                     for k, v in enumerate(res["verdicts"]))


def summarise(rows, *, seed, dtypes, tools, selection, seconds):
    """Per tool x dtype: mutants caught, and caught cleanly (``mark_clean``), the same for the edge-only
    mutants, mutants caught only by raising, false alarms (correct (implementation, op) pairs flagged)
    and their failing cases, seconds."""
    mutants = [r for r in rows if r["kind"] == "mutant"]
    correct = [r for r in rows if r["kind"] == "correct"]
    columns = _columns(dtypes, tools)
    mark_clean(mutants, correct, columns)
    table = []
    for key, tool, setting, dtype in columns:
        res = lambda r: _result(r, tool, setting, dtype)  # noqa: E731
        caught = [r for r in mutants if res(r)["flagged"]]
        clean = [r for r in caught if res(r)["cleanly"]]
        alarms = [r for r in correct if res(r)["flagged"]]
        table.append({
            "key": key, "tool": tool, "setting": setting, "dtype": dtype,
            "cases": sum(res(r)["cases"] for r in rows),
            "mutants": len(mutants), "mutants_caught": len(caught), "mutants_caught_cleanly": len(clean),
            "mutants_with_controls": sum(res(r)["cleanly"] is not None for r in mutants),
            "edge_only": sum(r["edge_only"] for r in mutants),
            "edge_only_caught": sum(r["edge_only"] for r in caught),
            "edge_only_caught_cleanly": sum(r["edge_only"] for r in clean),
            "caught_only_by_raising": sum(1 for r in caught if setting == "same_cases" and res(r)["failing"] == 0),
            "correct_pairs": len(correct), "false_alarms": len(alarms),
            "correct_cases": sum(res(r)["cases"] for r in correct),
            "false_alarm_cases": sum(res(r)["failing"] + res(r).get("raised", 0) if setting == "same_cases"
                                     else res(r)["failing"] for r in correct),
            "false_alarm_families": sorted({f for r in alarms for f in res(r).get("flagged_families", [])}),
            "missed": [r["name"] for r in mutants if not res(r)["flagged"]],
            "not_cleanly": [r["name"] for r in caught if res(r)["cleanly"] is False],
            "seconds": round(sum(res(r)["seconds"] for r in rows), 1)})
    missed_by_all = [r["name"] for r in mutants
                     if not any(_result(r, tool, setting, dtype)["flagged"] for _, tool, setting, dtype in columns)]
    others = [c for c in columns if c[1] != "bpcheck"]
    not_cleanly_by_others = [r["name"] for r in mutants
                             if others and not any(_result(r, *c[1:])["cleanly"] for c in others)]
    return {"seed": seed, "dtypes": list(dtypes), "tools": list(tools), "selection": selection,
            "mutants": len(mutants), "correct_pairs": len(correct), "seconds": round(seconds, 1),
            "summary": table, "missed_by_every_tool": missed_by_all,
            "not_caught_cleanly_by_gradcheck_or_check_grads": not_cleanly_by_others, "implementations": rows}


# ---- the report -----------------------------------------------------------------------------------

def _cell(row, result):
    if result["setting"] == "check_op":
        if result["verdict"] == "fail":
            if row["kind"] == "correct":
                return f"**false alarm** ({result['failing']}/{result['cases']})"
            word = "noise" if result.get("cleanly") is False else "caught"
            return f"{word} ({result['failing']}/{result['cases']}; first wrong {result['first_wrong']})"
        if result["verdict"] == "pass":
            return f"**missed** (0/{result['cases']})" if row["kind"] == "mutant" else f"pass ({result['cases']})"
        return result["verdict"]
    flagged = result["failing"] + result["raised"]
    detail = f"{flagged}/{result['cases']}"
    if result["raised"]:
        detail += f", {result['raised']} raised"
    if row["kind"] == "mutant":
        if not result["flagged"]:
            return f"**missed** (0/{result['cases']})"
        return f"{'noise' if result.get('cleanly') is False else 'caught'} ({detail})"
    if not result["flagged"]:
        return f"pass ({result['cases']})"
    return f"**false alarm** ({detail}: {', '.join(result['flagged_families'])})"


def _names(names, expected=None):
    if not names:
        return "none"
    return ", ".join(f"`{n}`" + (f" ({expected[n]['tensor']})" if expected else "") for n in names)


def markdown(summary):
    s = summary
    tools, dtypes, sel = s["tools"], s["dtypes"], s["selection"]
    lines = ["# bpcheck, gradcheck and check_grads on the op zoo and on correct layers", "",
             f"Regenerate: `{REGENERATE.format(seed=s['seed'])}`", ""]
    if sel["members"] is not None or sel["ops"] is not None or list(sel["correct"]) != list(LAYERS) \
            or list(dtypes) != list(DTYPES) or list(tools) != list(TOOLS):
        pick = lambda v: "all" if v is None else (", ".join(v) or "none")  # noqa: E731
        lines += [f"A subset: members {pick(sel['members'])}; ops {pick(sel['ops'])}; correct implementations "
                  f"{pick([_rel(LAYERS[w]) for w in sel['correct']])}; dtypes {pick(dtypes)}; tools {pick(tools)}.", ""]
    lines += [
        f"{s['mutants']} mutants (`tests/meta/op_zoo`: CS231n-style layers with one realistic slip each) and "
        f"{s['correct_pairs']} correct (implementation, op) pairs ("
        + (" and ".join(f"`{_rel(LAYERS[w])}`" for w in sel["correct"]) or "none")
        + f", every op with a CS231n signature), seed {s['seed']}; {s['seconds']:.0f} s for the whole run "
        "(on a shared CPU: the seconds are indicative).", "",
        "- **bpcheck `check_op`**: `check_op(op, layers=module, extended=True, seed=seed)`, its default covering "
        "set -- every edge family of the op's record, 4 cases each, in both dtypes -- judged against the "
        "certified truth with a rounding bound.",
        "- **bpcheck, gradcheck, check_grads per dtype**: the same cases for the three tools, "
        "`cases(op, (dtype,), per_family=1, seed=seed)`: one case of every family of the op (ties, large means, "
        "repeated indices, padding borders, ...) in that dtype. bpcheck: `judge_case` on each case. gradcheck: "
        "`torch.autograd.gradcheck(fn, inputs, raise_exception=False)` at its defaults (eps 1e-6, atol 1e-5, "
        "rtol 1e-3; documented for float64, run in float32 at the same defaults to record what happens) on a "
        "`torch.autograd.Function` whose forward calls the NumPy forward and keeps its cache and whose backward "
        "calls the NumPy backward with the cotangent. check_grads: `jax.test_util.check_grads(f, args, order=1, "
        "modes=['rev'])` at its defaults (one random direction and one random cotangent; eps 1e-4, tolerance "
        "1e-5 in float64, 2e-3 in float32) on a `jax.custom_vjp` whose primal and VJP call the NumPy code "
        "through `jax.pure_callback`. Labels, indices and hyper-parameters are closed over, not differentiated.",
        "- A tool *catches* a mutant when a case fails or the layer raises under it (a shape error counts); on "
        "a correct implementation either is a *false alarm*. A catch is *clean* when the mutant fails on a case "
        "where the same tool passes every correct implementation of the op, or raises on a case where none of "
        "them raises (for `check_op`, which draws its own cases: when it passes every correct implementation "
        "of the op); a catch that is not clean is "
        "*noise* -- the tool fails the correct code there too. *Edge-only*: mutants whose `shows_when` is not "
        "\"always\" (nor \"always\" qualified, such as \"always in training mode\").", "",
        "| tool | dtype | cases | mutants caught | cleanly | edge-only caught | cleanly | only by raising | "
        "false alarms | failing cases on correct code | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in s["summary"]:
        label = "bpcheck `check_op` (default)" if t["setting"] == "check_op" else t["tool"]
        dtype = "both" if t["setting"] == "check_op" else t["dtype"]
        raising = "—" if t["setting"] == "check_op" else str(t["caught_only_by_raising"])
        lines.append(f"| {label} | {dtype} | {t['cases']} | {t['mutants_caught']} of {t['mutants']} | "
                     f"{t['mutants_caught_cleanly']} | {t['edge_only_caught']} of {t['edge_only']} | "
                     f"{t['edge_only_caught_cleanly']} | {raising} | {t['false_alarms']} of {t['correct_pairs']} | "
                     f"{t['false_alarm_cases']} of {t['correct_cases']} | {t['seconds']} |")
    expected = {r["name"]: r for r in s["implementations"] if r["kind"] == "mutant"}
    lines += ["", "## Missed, noise and false alarms", "",
              f"- Missed by every tool in every dtype: {_names(s['missed_by_every_tool'])}.",
              "- Caught cleanly by neither gradcheck nor check_grads, in either dtype: "
              f"{_names(s['not_caught_cleanly_by_gradcheck_or_check_grads'], expected)}."]
    for t in s["summary"]:
        label = "bpcheck `check_op`" if t["setting"] == "check_op" else f"{t['tool']} {t['dtype']}"
        text = f"- {label}: missed {_names(t['missed'], expected)}"
        if len(t["not_cleanly"]) > 10:
            clean = [n for n in expected if n not in t["missed"] and n not in t["not_cleanly"]]
            text += (f"; noise only on {len(t['not_cleanly'])} of its {t['mutants_caught']} catches (clean: "
                     f"{_names(clean)})")
        elif t["not_cleanly"]:
            text += f"; noise only on {_names(t['not_cleanly'])}"
        if t["false_alarms"]:
            text += f"; false alarms on {t['false_alarms']} pairs"
            if t["false_alarm_families"]:
                text += f" (families {', '.join(t['false_alarm_families'])})"
        lines.append(text + ".")
    lines += ["", "The tools other than bpcheck compare the backward with finite differences of the layer's own "
              "forward: a slip in the forward whose backward follows it agrees with them; an absolute tolerance "
              "(gradcheck's atol 1e-5) passes a wrong gradient whose true entries are smaller than it (confident "
              "logits); check_grads calls the backward once per case, so a slip that shows on a later call goes "
              "unseen; at a tie or a nearly constant row a finite difference straddles a kink or a steep "
              "curve, and in float32 gradcheck's step of 1e-6 is a few units in the last place."]
    cols = [c for c in _columns(dtypes, tools) if c[1] != "bpcheck" or c[2] == "check_op"]
    header = ["implementation", "op", "expected"] + [("bpcheck" if c[2] == "check_op" else c[0]) for c in cols]
    lines += ["", "## Per implementation", "",
              "Cells: the verdict, then the failing (or raising) cases of the cases run; for bpcheck (its default "
              "`check_op` run), the first wrong tensor of its shrunk case; for a false alarm, the families of the "
              "failing cases. *noise*: flagged only where the same tool fails the correct code too. *expected*: the "
              "member's first wrong tensor and where its slip shows (its `EXPECTED`). bpcheck's verdicts on the "
              "tools' shared cases are in the JSON and in the lists above.", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in s["implementations"]:
        exp = f"{r['tensor']}: {r['shows_when']}" if r["kind"] == "mutant" else "correct"
        cells = [_cell(r, _result(r, tool, setting, dtype)) for _, tool, setting, dtype in cols]
        lines.append(f"| {r['name']} | {r['op']} | {exp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
