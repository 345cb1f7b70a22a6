"""Whole-network benchmarks: seconds to check a transformer block against its parameter count.

    .venv/bin/python benchmarks/graphs.py            (make bench runs it after benchmarks/ops.py)

Writes benchmarks/graphs_results.json and graphs_results.md. The block is ``transformer_block`` of
``bpcheck.ops.architectures`` built past its listed sizes by calling its ``graph(size)`` and
``draw(rng, family, dtype, size)`` directly: B = 2, T = 8, H = 4 heads, hidden = 4 C, C in ``WIDTHS``
(C = 96: about 1.1 10^5 parameters). One float64 ``plain`` case per size, judged for the hand-written
reference (``reference/networks.py``), in a fresh interpreter (``common.in_child``), warmed on the
smallest listed size first. Seconds (wall clock) of:

- truth: ``bpcheck.ops.graph.truth`` (ball arithmetic, precision doubled until certified);
- bound: ``bpcheck.ops.graph.bound`` (the rounding model of the whole graph);
- run: the reference's forward and backward (``python_candidate(...).run``);
- nodes: the node-by-node judgement at the reference's own values (``bpcheck.opcheck.graph_local.judge_locally``:
  each node's op truth and bound);
- check: ``judge_graph_case`` end to end (truth + bound + run + every tensor judged + the nodes), and the
  same in float32;

beside ``torch.autograd.gradcheck`` (float64, defaults, fast_mode=False) on the same block, case and
reference, as ``bpcheck.opcheck.graph_baselines`` runs it: L = <out, cotangent> through a
``torch.autograd.Function`` whose backward is the reference's gradient. Its numerical Jacobian needs two
forward passes per leaf entry, so it is stopped after ``CAP_S`` seconds; the estimate 2 P t_forward
(P leaf entries, t_forward one timed forward of the reference) is recorded for every size. Nothing here
asserts a time.
"""
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks.common import HERE, in_child, machine  # noqa: E402

CAP_S = 180.0
WIDTHS = [12, 24, 48, 96, 128]


def _size(c):
    return {"B": 2, "T": 8, "C": c, "H": 4, "hidden": 4 * c}


def _case(c, dtype="float64"):
    """A plain case of the transformer block at width ``c`` (seed 0), drawn as draw_graph_case draws one."""
    import numpy as np

    from bpcheck.ops import architectures
    from bpcheck.ops.graph_cases import GraphCase
    arch, size = architectures.get("transformer_block"), _size(c)
    rng = np.random.default_rng(0)
    values, constants = arch.draw(rng, "plain", dtype, size)
    cotangent = rng.standard_normal((size["B"] * size["T"], c)).astype(dtype)
    return GraphCase(arch.name, dtype, "plain", 0, size, arch.graph(size), values, constants, cotangent)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - start, 4)


def bpcheck_one(params):
    """Seconds of truth, bound, the reference's run, the node judgement and the whole check at one width."""
    from bpcheck.ops.graph import bound, truth
    from bpcheck.opcheck.graph_candidates import python_candidate
    from bpcheck.ops.graph_cases import draw_graph_case
    from bpcheck.opcheck.graph_check import judge_graph_case
    from bpcheck.opcheck.graph_local import judge_locally
    from reference.networks import transformer_block
    candidate = python_candidate(transformer_block, "reference")
    judge_graph_case(draw_graph_case("transformer_block", "plain", "float64", 0), candidate)      # warm
    case = _case(params["C"])
    g, v, k, cot = case.graph, case.values, case.constants, case.cotangent
    t, s = {}, {}
    t["truth"], s["truth"] = _timed(lambda: truth(g, v, k, cot))
    _, s["bound"] = _timed(lambda: bound(g, v, k, cot, "float64"))
    result, s["run"] = _timed(lambda: candidate.run(case))
    _, s["nodes"] = _timed(lambda: judge_locally(case, result))
    (rows, _, cls), s["check"] = _timed(lambda: judge_graph_case(case, candidate))
    (_, _, cls32), s["check_float32"] = _timed(lambda: judge_graph_case(_case(params["C"], "float32"), candidate))
    forward = min(_timed(lambda: transformer_block(v, k, case.hyper, cot))[1] for _ in range(3))
    leaves = sum(a.size for a in v.values())
    return {"seconds": s, "class": cls, "class_float32": cls32, "bits": t["truth"]["bits"], "leaf_entries": int(leaves),
            "params": int(leaves - v["x"].size), "rows": len(rows), "forward_seconds": forward,
            "gradcheck_estimate_seconds": round(2 * leaves * forward, 1)}


def gradcheck_one(params):
    """Seconds for torch.autograd.gradcheck (float64, fast_mode=False) on the contracted block, the reference."""
    import numpy as np
    import torch

    from bpcheck.opcheck.framework_checks import gradcheck_fn
    from bpcheck.opcheck.graph_baselines import _contracted
    from bpcheck.opcheck.graph_candidates import python_candidate
    from reference.networks import transformer_block
    torch.zeros(1)
    case = _case(params["C"])
    names, forward, backward = _contracted(case, python_candidate(transformer_block, "reference"))
    start = time.perf_counter()
    verdict, message = gradcheck_fn(names, forward, backward, case.values, np.float64)
    return {"seconds": round(time.perf_counter() - start, 3), "verdict": verdict, "message": message}


def profile_truth(params):
    """The truth's ten costliest functions (cumulative seconds) at one width, under cProfile."""
    import cProfile
    import pstats

    from bpcheck.ops.graph import truth
    case = _case(params["C"])
    profiler = cProfile.Profile()
    profiler.enable()
    truth(case.graph, case.values, case.constants, case.cotangent)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats("cumulative")
    rows = [(f"{Path(f).name}:{line} {name}", round(st[3], 3)) for (f, line, name), st in stats.stats.items()]
    return {"top": sorted(rows, key=lambda r: -r[1])[:12]}


def main():
    result = {"machine": machine(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "cap_s": CAP_S, "rows": []}
    stopped = None
    for c in WIDTHS:
        row = {"C": c, "size": _size(c), "bpcheck": in_child("graphs:bpcheck_one", {"C": c}, timeout=1800)}
        if stopped:
            row["gradcheck"] = {"skipped": f"the previous width (C = {stopped}) was stopped after {CAP_S:.0f} s"}
        else:
            try:
                row["gradcheck"] = in_child("graphs:gradcheck_one", {"C": c}, timeout=CAP_S)
            except subprocess.TimeoutExpired:
                row["gradcheck"] = {"skipped": f"stopped after {CAP_S:.0f} s"}
                stopped = c
        result["rows"].append(row)
        print(json.dumps(row, default=float), flush=True)
    largest = max(result["rows"], key=lambda r: r["bpcheck"]["seconds"]["truth"])
    result["truth_profile"] = {"C": largest["C"], **in_child("graphs:profile_truth", {"C": largest["C"]})}
    (HERE / "graphs_results.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    write_markdown(result, HERE / "graphs_results.md")


def write_markdown(result, path):
    lines = ["# Whole-network benchmark: a transformer block", "",
             f"Measured {result['when']} on {result['machine'].get('cpu_count', '?')} CPUs; regenerate with "
             "`.venv/bin/python benchmarks/graphs.py` (or `make bench`).", "",
             "`transformer_block` (pre-norm: layer norm, causal 4-head attention, residual, layer norm, affine, "
             "gelu, affine, residual) at B = 2, T = 8, H = 4, hidden = 4 C; one float64 plain case per width "
             "judged for `reference/networks.py`. Seconds (wall clock, one process, warmed). *check*: "
             "`judge_graph_case` end to end -- truth + bound + the reference's run + every graph tensor judged + "
             "every node judged at the reference's values; the columns before it are its parts timed alone. "
             f"gradcheck: `torch.autograd.gradcheck` (float64, defaults) on the same case and reference, stopped "
             f"after {result['cap_s']:.0f} s; *estimate*: 2 x leaf entries x one timed forward, the forward "
             "passes of its numerical Jacobian.", "",
             "| C | parameters | truth | bits | bound | run | nodes | check | check float32 | gradcheck | "
             "gradcheck estimate |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        b, s, g = row["bpcheck"], row["bpcheck"]["seconds"], row["gradcheck"]
        grad = f"{g['seconds']:.3g} ({g['verdict']})" if "seconds" in g else f"— ({g['skipped']})"
        lines.append(f"| {row['C']} | {b['params']:,} | {s['truth']:.3g} | {b['bits']} | {s['bound']:.3g} | "
                     f"{s['run']:.3g} | {s['nodes']:.3g} | {s['check']:.3g} ({b['class']}) | "
                     f"{s['check_float32']:.3g} ({b['class_float32']}) | {grad} | {b['gradcheck_estimate_seconds']:,} |")
    if result.get("note"):
        lines += ["", result["note"]]
    p = result["truth_profile"]
    lines += ["", f"## Where the truth's time goes (C = {p['C']}, cProfile, cumulative seconds)", "",
              "| function | seconds |", "|---|---:|"] + [f"| `{name}` | {sec} |" for name, sec in p["top"]]
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
