"""The op false-alarm campaign: correct implementations on many op cases, every alarm a defect.

``run(n, out, jobs)`` judges about ``n`` op cases, spread over every op, every edge family and both
dtypes (the covering set repeated with fresh seeds), for each correct implementation: the reference
(``reference/layers.py``), the second implementation (``examples/cs231n_layers.py``) and torch's
built-ins. (JAX compiles each new shape, ~0.2 s a case here; it is in the op report, not here.) Each
chunk of cases is judged in a worker process; a line per chunk streams to ``OUT/ops_false_alarms.jsonl``
(cases, alarms with the case described, the largest error in units of the tolerance), and
``OUT/ops_false_alarms.md`` / ``.json`` summarise per implementation and op. A correct implementation
never fails: any alarm is a false alarm, a defect of bpcheck.
"""
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bpcheck import ops
from bpcheck.opcheck import candidates as cand
from bpcheck.ops.cases import cases
from bpcheck.opcheck.check import judge_case
from bpcheck.opcheck.report import LAYERS

__all__ = ["run", "WHO"]

WHO = ("reference", "second", "torch")


def _candidate(op, who):
    return cand.builtin(op, who) if who in ("torch", "jax") else cand.cs231n(LAYERS[who], who, extended=True)


def _chunk(task):
    name, who, seed = task
    op = ops.get(name)
    candidate = _candidate(op, who)
    judged, alarms, worst = 0, [], 0.0
    for case in cases(op, ("float32", "float64"), 1, seed):
        rows, cls = judge_case(op, candidate, case)
        if cls == "unsupported":
            continue
        judged += 1
        worst = max([worst] + [r["error"] / r["allowed"] for r in rows if "error" in r and r["allowed"] > 0])
        if cls == "bug":
            alarms.append({"case": case.describe(), "seed": case.seed,
                           "rows": [{k: v for k, v in r.items() if k != "entries"} for r in rows
                                    if r["status"] == "bug"]})
    return {"op": name, "who": who, "seed": seed, "cases": judged, "alarms": alarms, "worst": worst}


def run(n, out=Path("reports"), jobs=2, echo=print):
    """At least about ``n`` cases in all, spread over the implementations; ``jobs`` worker processes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = [(name, who) for who in WHO for name in ops.names() if who == "torch" or ops.get(name).cs231n]
    per_round = sum(2 * len(ops.get(name).families) for name, _ in pairs)
    rounds = max(1, -(-n // per_round))                    # declined cases (torch's documented limits) aside
    tasks = [(name, who, 1000 + r) for r in range(rounds) for name, who in pairs]
    start, totals = time.perf_counter(), {}
    with open(out / "ops_false_alarms.jsonl", "w") as stream, ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        for i, line in enumerate(pool.map(_chunk, tasks, chunksize=4)):
            stream.write(json.dumps(line, default=float) + "\n")
            key = (line["who"], line["op"])
            t = totals.setdefault(key, {"cases": 0, "alarms": 0, "worst": 0.0})
            t["cases"] += line["cases"]
            t["alarms"] += len(line["alarms"])
            t["worst"] = max(t["worst"], line["worst"])
            if i % 200 == 0:
                echo(f"  {i}/{len(tasks)} chunks, {sum(v['cases'] for v in totals.values())} cases")
    summary = {"cases": sum(v["cases"] for v in totals.values()), "alarms": sum(v["alarms"] for v in totals.values()),
               "seconds": round(time.perf_counter() - start, 1), "rounds": rounds, "jobs": jobs,
               "groups": [{"who": w, "op": o, **v} for (w, o), v in sorted(totals.items())]}
    (out / "ops_false_alarms.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["# bpcheck op false-alarm campaign", "",
             f"{summary['cases']} op cases judged ({rounds} rounds of every op's covering set: every edge family, "
             f"both dtypes), {summary['alarms']} false alarms, {summary['seconds']} s on {jobs} processes. "
             "*worst*: the largest error of any tensor in units of its tolerance (a tensor passes below 1). "
             "Regenerate: `bpcheck selftest --op-false-alarms N`.", "",
             "| implementation | op | cases | false alarms | worst |", "|---|---|---:|---:|---:|"]
    lines += [f"| {g['who']} | {g['op']} | {g['cases']} | {g['alarms']} | {g['worst']:.3g} |" for g in summary["groups"]]
    (out / "ops_false_alarms.md").write_text("\n".join(lines) + "\n")
    return summary
