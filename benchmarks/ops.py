"""The op catalog's benchmarks: verified op cases per second, and seconds against parameter count.

    .venv/bin/python benchmarks/ops.py            (make bench runs it after benchmarks/run.py)

Writes benchmarks/ops_results.json and ops_results.md. Each measurement runs in a fresh interpreter
(``common.in_child``). Sections:

1. throughput: ``check_op`` on every op of ``reference/layers.py`` (the covering set of each record,
   both dtypes), end to end in one process and in two processes splitting the ops, cases per second
   counted from the first case (imports excluded) and from process start;
2. scaling: one float64 case of layer norm and of conv2d at growing parameter counts -- bpcheck's truth,
   rounding bound and judgement of torch's built-in, beside ``torch.autograd.gradcheck`` on the same
   built-in and inputs -- each way skipped past ``cap_s`` seconds (its estimate from the last size
   recorded instead). Nothing here asserts a time.
"""
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks.common import HERE, ROOT, in_child, machine  # noqa: E402

CAP_S = 120.0
LAYERNORM_D = [50, 500, 5_000, 50_000, 500_000]          # params 2D: 10^2 .. 10^6 (N = 2)
CONV_S = [4, 11, 33, 105, 333]                           # C = F = s, 3x3 kernels: params 9 s^2 + s


def throughput(params):
    """Cases/s of check_op over the ops in params["ops"] against reference/layers.py."""
    from bpcheck.opcheck.check import check_op
    start, cases, failing = time.perf_counter(), 0, 0
    for op in params["ops"]:
        report = check_op(op, layers=str(ROOT / "reference" / "layers.py"), extended=True)
        cases += report.cases
        failing += report.failures
    seconds = time.perf_counter() - start
    return {"cases": cases, "failing": failing, "seconds": round(seconds, 3)}


def _case(op_name, size):
    import numpy as np

    from bpcheck import ops
    from bpcheck.ops.cases import OpCase
    rng = np.random.default_rng(0)
    if op_name == "layernorm":
        inputs = {"x": rng.standard_normal((2, size)), "gamma": rng.standard_normal(size),
                  "beta": rng.standard_normal(size)}
        hyper = {"eps": 1e-5}
        shape = (2, size)
    else:
        inputs = {"x": rng.standard_normal((1, size, 8, 8)), "w": rng.standard_normal((size, size, 3, 3)) / size,
                  "b": rng.standard_normal(size)}
        hyper = {"stride": [1, 1], "pad": [1, 1], "dilation": [1, 1]}
        shape = (1, size, 8, 8)
    return ops.get(op_name), OpCase(op_name, "float64", "plain", 0, inputs, {}, hyper, rng.standard_normal(shape))


def bpcheck_one(params):
    """Seconds for one case: truth, bound, the torch built-in's run and the judgement (torch imported
    and warmed on a tiny case first, as gradcheck's torch is)."""
    from bpcheck.opcheck.candidates import builtin
    from bpcheck.opcheck.check import judge_case
    warm_op, warm_case = _case(params["op"], 2)
    judge_case(warm_op, builtin(warm_op, "torch"), warm_case)
    op, case = _case(params["op"], params["size"])
    start = time.perf_counter()
    rows, cls = judge_case(op, builtin(op, "torch"), case)
    return {"seconds": round(time.perf_counter() - start, 3), "class": cls,
            "params": int(sum(v.size for k, v in case.inputs.items() if k != "x"))}


def gradcheck_one(params):
    """Seconds for torch.autograd.gradcheck on the torch built-in, float64, every input."""
    import torch
    op, case = _case(params["op"], params["size"])
    tensors = {k: torch.from_numpy(v).requires_grad_(True) for k, v in case.inputs.items()}
    start = time.perf_counter()
    ok = torch.autograd.gradcheck(lambda *xs: op.torch(torch, dict(zip(tensors, xs)), {}, case.hyper),
                                  tuple(tensors.values()), fast_mode=False)
    return {"seconds": round(time.perf_counter() - start, 3), "ok": bool(ok)}


def _layered_ops():
    from bpcheck import ops
    return [n for n, r in ops.REGISTRY.items() if r.cs231n]


def main():
    names = _layered_ops()
    result = {"machine": machine(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "throughput": {}, "scaling": []}
    one = in_child("ops:throughput", {"ops": names})
    result["throughput"]["one_process"] = {**one, "cases_per_s": one["cases"] / one["seconds"],
                                           "cases_per_s_from_start": one["cases"] / one["process_seconds"]}
    from concurrent.futures import ThreadPoolExecutor
    halves = [names[0::2], names[1::2]]
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda part: in_child("ops:throughput", {"ops": part}), halves))
    wall = time.perf_counter() - start
    cases = sum(p["cases"] for p in parts)
    result["throughput"]["two_processes"] = {"cases": cases, "wall_seconds": round(wall, 3),
                                             "cases_per_s_from_start": cases / wall,
                                             "cases_per_s": cases / max(p["seconds"] for p in parts)}
    print(json.dumps(result["throughput"], indent=1))
    for op_name, sizes in (("layernorm", LAYERNORM_D), ("conv2d", CONV_S)):
        last = {}
        for size in sizes:
            row = {"op": op_name, "size": size}
            for way, fn in (("bpcheck", "ops:bpcheck_one"), ("gradcheck", "ops:gradcheck_one")):
                if last.get(way, 0) > CAP_S / 10:
                    took = "did not finish" if last[way] == float("inf") else f"took {last[way]:.0f} s"
                    row[way] = {"skipped": f"the previous size {took}"}
                    continue
                try:
                    row[way] = in_child(fn, {"op": op_name, "size": size}, timeout=CAP_S * 3)
                    last[way] = row[way]["seconds"]
                except subprocess.TimeoutExpired:
                    row[way] = {"skipped": f"over {CAP_S * 3:.0f} s"}
                    last[way] = float("inf")
                except RuntimeError as exc:               # a crash is a result to record
                    row[way] = {"skipped": str(exc).splitlines()[0][:120]}
                    last[way] = float("inf")
            row["params"] = (row.get("bpcheck") or {}).get("params") or (2 * size if op_name == "layernorm"
                                                                         else 9 * size * size + size)
            result["scaling"].append(row)
            print(json.dumps(row))
    (HERE / "ops_results.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    write_markdown(result, HERE / "ops_results.md")


def _cell(way):
    return f"{way['seconds']:.3g}" if "seconds" in way else f"— ({way['skipped']})"


def write_markdown(result, path):
    t1, t2 = result["throughput"]["one_process"], result["throughput"]["two_processes"]
    lines = ["# Op catalog benchmarks", "", f"Measured {result['when']} on {result['machine'].get('cpu_count', '?')} CPUs; "
             "regenerate with `.venv/bin/python benchmarks/ops.py` (or `make bench`).", "",
             "## Verified op cases per second (reference/layers.py, every op's covering set, both dtypes)", "",
             "| processes | cases | cases/s (from the first case) | cases/s (from process start) |",
             "|---:|---:|---:|---:|",
             f"| 1 | {t1['cases']} | {t1['cases_per_s']:.0f} | {t1['cases_per_s_from_start']:.0f} |",
             f"| 2 | {t2['cases']} | {t2['cases_per_s']:.0f} | {t2['cases_per_s_from_start']:.0f} |", "",
             "## One float64 case against parameter count: bpcheck beside torch.autograd.gradcheck", "",
             "bpcheck: certified truth, rounding bound, torch's built-in run and judged. gradcheck: torch's "
             "finite-difference check of the same built-in on the same inputs (fast_mode=False). Seconds.", "",
             "| op | size | parameters | bpcheck s | gradcheck s |", "|---|---:|---:|---:|---:|"]
    for row in result["scaling"]:
        lines.append(f"| {row['op']} | {row['size']} | {row['params']:,} | {_cell(row['bpcheck'])} | "
                     f"{_cell(row['gradcheck'])} |")
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
