"""bpcheck beside gradcheck and check_grads on whole networks: the graph zoo and the correct networks.

    python -m bpcheck.opcheck.graph_baselines --out reports [--seed 0]

Implementations: every member of ``tests/meta/graph_zoo`` (a network with one bug, its ``net`` and
``EXPECTED``) and, for every architecture of ``bpcheck.ops.architectures``, the correct ones:
``reference/networks.py``, ``examples/numpy_networks.py``, ``examples/torch_networks.py`` (the function
named after the architecture) and the records themselves (``record_candidate()``). The cases: for each
architecture and dtype, ``per_family`` cases of every family, drawn as ``check_graph(arch, fn, seed=seed,
per_family=per_family)`` draws them -- so bpcheck's column is exactly ``check_graph``'s run before shrinking.
On each case:

- bpcheck: ``judge_graph_case`` (the whole graph's tensors, and every node on its own when the candidate
  returns node outputs and deltas);
- ``torch.autograd.gradcheck`` at its defaults (eps 1e-6, atol 1e-5, rtol 1e-3) and
  ``jax.test_util.check_grads(order=1, modes=["rev"])`` at its defaults, both through
  ``bpcheck.opcheck.framework_checks.gradcheck_fn`` / ``check_grads_fn``, on the scalar L(leaves) = <out, cotangent>
  (the network's output contracted with the case's cotangent; a loss times its scalar dout): the forward
  runs the candidate on the tools' (perturbed) leaves and returns L, the backward returns the candidate's
  own leaf gradients (computed with dout = the case's cotangent) times the incoming scalar. Each tool
  compares them with its own finite differences of the candidate's forward. Constants (labels, ids,
  masks) and hyper-parameters are closed over. gradcheck is documented for float64; it is run on the
  float32 cases too, at the same defaults, to record what it says.

A tool *catches* a member when a case fails or the candidate raises under it; on a correct
implementation either is a *false alarm*. A catch is *clean* when the same tool passes every correct
implementation of the architecture on that case (``bpcheck.opcheck.baselines_markdown.mark_clean``). Writes
``OUT/graph_baselines.json`` and ``.md``; seconds are wall-clock seconds on a shared CPU.
"""
import argparse
import dataclasses
import importlib
import json
import time
from pathlib import Path

import numpy as np

from bpcheck.ops import architectures
from bpcheck.opcheck.baselines_markdown import DTYPES, TOOLS, mark_clean, rel_path   # the op baselines' tools
from bpcheck.opcheck.framework_checks import check_grads_fn, describe, enable_x64, gradcheck_fn
from bpcheck.opcheck.candidates import load_module
from bpcheck.opcheck.graph_candidates import python_candidate, record_candidate
from bpcheck.ops.graph_cases import draw_graph_case
from bpcheck.opcheck.graph_check import judge_graph_case
from bpcheck.opcheck.report import ROOT

__all__ = ["compare", "implementations", "graph_cases", "verdict", "summarise", "markdown", "main",
           "CORRECT", "TOOLS", "DTYPES", "ZOO"]

ZOO = ROOT / "tests" / "meta" / "graph_zoo"
CORRECT = {"reference": ROOT / "reference" / "networks.py", "numpy_networks": ROOT / "examples" / "numpy_networks.py",
           "torch_networks": ROOT / "examples" / "torch_networks.py", "records": None}
REGENERATE = "python -m bpcheck.opcheck.graph_baselines --out reports --seed {seed}"


def implementations(members=None, archs=None, correct=tuple(CORRECT), zoo=ZOO):
    """Dicts with name, arch, kind ("mutant" | "correct"), a ``make()`` giving a fresh ``GraphCandidate``
    and, for a mutant, its EXPECTED node. ``members``: zoo member names (None: all); ``archs``: restrict
    both kinds to these architectures; ``correct``: keys of ``CORRECT``."""
    found, wanted = [], None if members is None else {Path(m).stem for m in members}
    for path in sorted(Path(zoo).glob("bug_*.py")):
        if wanted is not None and path.stem not in wanted:
            continue
        expected = load_module(path).EXPECTED
        if archs is None or expected["arch"] in archs:
            found.append({"name": path.stem, "arch": expected["arch"], "kind": "mutant", "node": expected["node"],
                          "make": lambda p=path: python_candidate(load_module(p).net, p.stem)})
    for who in correct:
        for arch in architectures.ARCHITECTURES:
            if archs is not None and arch not in archs:
                continue
            name = "records" if CORRECT[who] is None else rel_path(CORRECT[who])
            make = (record_candidate if CORRECT[who] is None else
                    lambda p=CORRECT[who], a=arch: python_candidate(getattr(load_module(p), a), rel_path(p)))
            found.append({"name": name, "arch": arch, "kind": "correct", "make": make})
    return found


def graph_cases(arch, dtype, seed=0, per_family=2):
    """The cases judged for ``arch`` in ``dtype``: ``check_graph``'s draw (every family, ``per_family`` each)."""
    arch = architectures.get(arch)
    return [draw_graph_case(arch, family, dtype, seed * 1000 + k) for family in arch.families for k in range(per_family)]


def _contracted(case, candidate):
    """(names, forward, backward) of L(leaves) = <out, cotangent> for ``gradcheck_fn`` / ``check_grads_fn``:
    the forward runs ``candidate`` on the given leaves (autograd enabled: torch's ``Function.forward`` runs
    under no_grad, and a torch candidate differentiates inside) and keeps its gradients as the state."""
    import torch
    names, cot = list(case.values), np.asarray(case.cotangent, dtype=np.float64)

    def forward(arrays):
        values = {k: np.array(a, dtype=case.dtype) for k, a in zip(names, arrays)}
        with torch.enable_grad():
            result = candidate.run(dataclasses.replace(case, values=values))
        return np.array(np.sum(result["out"] * cot), dtype=case.dtype), result["grads"]

    def backward(dout, grads):
        return {k: None if grads.get(k) is None else np.asarray(grads[k]) * float(dout) for k in names}
    return names, forward, backward


def verdict(tool, case, candidate):
    """("p" | "f" | "e", message) of ``tool`` on one case for ``candidate`` (a GraphCandidate)."""
    if tool == "bpcheck":
        rows, culprit, cls = judge_graph_case(case, candidate)
        if cls != "bug":
            return "p", None
        bad = next(r for r in rows if r["status"] == "bug")
        if bad["tensor"] == "call":
            return "e", bad["message"][:200]
        return "f", f"{bad['tensor']} wrong" + (f" (node {culprit['node']})" if culprit and culprit["node"] else "")
    try:
        names, forward, backward = _contracted(case, candidate)
        if tool == "gradcheck":
            return gradcheck_fn(names, forward, backward, case.values, case.dtype)
        return check_grads_fn(names, forward, backward, case.values, case.dtype, ())
    except Exception as exc:                       # the wrapping itself raised (the candidate's first call)
        return "e", describe(exc)


def _result(impl, tool, dtype, seed, per_family):
    candidate, start = impl["make"](), time.perf_counter()
    verdicts, families, messages = "", [], []
    for case in graph_cases(impl["arch"], dtype, seed, per_family):
        v, message = verdict(tool, case, candidate)
        verdicts += v
        families.append(case.family)
        if message and v != "p" and len(messages) < 2:
            messages.append(f"{case.family} seed {case.seed}: {message}")
    return {"tool": tool, "dtype": dtype, "setting": "same_cases", "verdicts": verdicts, "families": families,
            "cases": len(verdicts), "failing": verdicts.count("f"), "raised": verdicts.count("e"),
            "flagged": "f" in verdicts or "e" in verdicts, "messages": messages,
            "seconds": round(time.perf_counter() - start, 3)}


def compare(out=Path("reports"), *, seed=0, per_family=2, members=None, archs=None, correct=tuple(CORRECT),
            dtypes=DTYPES, tools=TOOLS, echo=print):
    """Every tool on every implementation; writes OUT/graph_baselines.json and .md; returns the summary."""
    start, out = time.perf_counter(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    importlib.import_module("torch")                      # imported before the first clock starts
    if "check_grads" in tools:
        enable_x64()
        importlib.import_module("jax.test_util")
    rows, found = [], implementations(members, archs, correct)
    for n, impl in enumerate(found, 1):
        row = {k: v for k, v in impl.items() if k != "make"}
        row["op"] = impl["arch"]                          # mark_clean pairs a mutant with the controls of its "op"
        row["results"] = [_result(impl, tool, dtype, seed, per_family) for tool in tools for dtype in dtypes]
        rows.append(row)
        echo(f"  {n}/{len(found)} {impl['name']} {impl['arch']}: " + ", ".join(
            f"{r['tool']} {r['dtype']} {r['verdicts']}" for r in row["results"]))
    summary = summarise(rows, seed=seed, per_family=per_family, dtypes=dtypes, tools=tools,
                        seconds=time.perf_counter() - start)
    (out / "graph_baselines.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "graph_baselines.md").write_text(markdown(summary))
    return summary


def summarise(rows, *, seed, per_family, dtypes, tools, seconds):
    """Per tool x dtype: members caught (and cleanly), false alarms (correct (implementation, arch) pairs
    flagged) and their failing cases, seconds."""
    mutants = [r for r in rows if r["kind"] == "mutant"]
    correct = [r for r in rows if r["kind"] == "correct"]
    columns = [(f"{t} {d}", t, "same_cases", d) for t in tools for d in dtypes]
    mark_clean(mutants, correct, columns)
    table = []
    for key, tool, setting, dtype in columns:
        res = lambda r: next(x for x in r["results"] if x["tool"] == tool and x["dtype"] == dtype)  # noqa: E731
        table.append({"key": key, "tool": tool, "dtype": dtype, "cases": sum(res(r)["cases"] for r in rows),
                      "mutants": len(mutants), "mutants_caught": sum(res(r)["flagged"] for r in mutants),
                      "mutants_caught_cleanly": sum(bool(res(r)["cleanly"]) for r in mutants),
                      "missed": [r["name"] for r in mutants if not res(r)["flagged"]],
                      "correct_pairs": len(correct), "false_alarms": sum(res(r)["flagged"] for r in correct),
                      "correct_cases": sum(res(r)["cases"] for r in correct),
                      "false_alarm_cases": sum(res(r)["failing"] + res(r)["raised"] for r in correct),
                      "seconds": round(sum(res(r)["seconds"] for r in rows), 1)})
    return {"seed": seed, "per_family": per_family, "dtypes": list(dtypes), "tools": list(tools),
            "mutants": len(mutants), "correct_pairs": len(correct), "seconds": round(seconds, 1),
            "summary": table, "implementations": rows}


def _cell(row, r):
    detail = f"{r['failing'] + r['raised']}/{r['cases']}" + (f", {r['raised']} raised" if r["raised"] else "")
    if row["kind"] == "mutant":
        if not r["flagged"]:
            return f"**missed** (0/{r['cases']})"
        return f"{'noise' if r.get('cleanly') is False else 'caught'} ({detail})"
    return f"**false alarm** ({detail})" if r["flagged"] else f"pass ({r['cases']})"


def markdown(summary):
    s = summary
    lines = ["# bpcheck, gradcheck and check_grads on whole networks", "",
             f"Regenerate: `{REGENERATE.format(seed=s['seed'])}`", "",
             f"{s['mutants']} graph zoo members (`tests/meta/graph_zoo`: a network with one bug each) and "
             f"{s['correct_pairs']} correct (implementation, architecture) pairs (`reference/networks.py`, "
             "`examples/numpy_networks.py`, `examples/torch_networks.py`, the records composed); per architecture "
             f"and dtype {s['per_family']} cases of every family (`check_graph`'s draw, seed {s['seed']}), the same "
             f"cases for every tool; {s['seconds']:.0f} s in all (shared CPU: indicative).", "",
             "- **bpcheck**: `judge_graph_case` -- every leaf gradient, the output and every node's delta against the "
             "certified truth of the graph with a rounding bound (and each node on its own when the implementation "
             "returns node outputs and deltas).",
             "- **gradcheck** (`torch.autograd.gradcheck`, defaults: eps 1e-6, atol 1e-5, rtol 1e-3; documented for "
             "float64, run in float32 too) and **check_grads** (`jax.test_util.check_grads(order=1, modes=['rev'])`, "
             "defaults) on L = <network output, case cotangent>: the implementation's forward gives L, its own "
             "leaf gradients (for that cotangent) are the analytical gradient the tool compares with its finite "
             "differences of the forward.",
             "- *caught*: a case fails or the implementation raises; on correct code that is a *false alarm*. "
             "*noise*: caught only on cases where the same tool fails every correct implementation too.", "",
             "| tool | dtype | cases | members caught | cleanly | false alarms (pairs) | failing cases on correct "
             "code | seconds |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for t in s["summary"]:
        lines.append(f"| {t['tool']} | {t['dtype']} | {t['cases']} | {t['mutants_caught']} of {t['mutants']} | "
                     f"{t['mutants_caught_cleanly']} | {t['false_alarms']} of {t['correct_pairs']} | "
                     f"{t['false_alarm_cases']} of {t['correct_cases']} | {t['seconds']} |")
    lines += [""] + [f"- {t['key']} missed: " + (", ".join(f"`{m}`" for m in t["missed"]) or "none") + "."
                     for t in s["summary"]]
    results = s["implementations"][0]["results"] if s["implementations"] else []
    head = ["implementation", "architecture", "expected node"] + [f"{r['tool']} {r['dtype']}" for r in results]
    lines += ["", "## Per implementation", "", "Cells: verdict (flagged cases / cases).", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in s["implementations"]:
        cells = [_cell(row, r) for r in row["results"]]
        lines.append(f"| {row['name']} | {row['arch']} | {row.get('node', 'correct')} | " + " | ".join(cells) + " |")
    notes = [f"- `{row['name']}` ({row['arch']}), {r['tool']} {r['dtype']}: {m}" for row in s["implementations"]
             for r in row["results"] if r["flagged"] and (row["kind"] == "correct" or r["tool"] != "bpcheck")
             for m in r["messages"][:1]]
    if notes:
        lines += ["", "## First message of each flag by gradcheck or check_grads, and of any false alarm", ""] + notes
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bpcheck.opcheck.graph_baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports", help="directory for graph_baselines.{json,md}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-family", type=int, default=2, help="cases of each family per architecture and dtype")
    parser.add_argument("--members", nargs="*", help="graph zoo members (default: all)")
    parser.add_argument("--archs", nargs="*", help="architectures (default: all)")
    parser.add_argument("--correct", nargs="*", default=list(CORRECT), choices=list(CORRECT))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    args = parser.parse_args(argv)
    summary = compare(args.out, seed=args.seed, per_family=args.per_family, members=args.members, archs=args.archs,
                      correct=tuple(args.correct), dtypes=tuple(args.dtypes))
    for t in summary["summary"]:
        print(f"{t['key']:20} caught {t['mutants_caught']}/{t['mutants']} ({t['mutants_caught_cleanly']} cleanly), "
              f"false alarms {t['false_alarms']}/{t['correct_pairs']}, {t['seconds']} s")
    print(f"{summary['seconds']} s")


if __name__ == "__main__":
    main()
