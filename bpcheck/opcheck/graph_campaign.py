"""The graph false-alarm campaign: correct networks on many whole-network cases, every alarm a defect.

    bpcheck selftest --graph-false-alarms N [--resume] [--out reports]

``run(n, out, jobs)`` draws ``n`` cases spread evenly over every architecture x family x dtype x listed
size (``bpcheck.ops.architectures``): case ``i`` is cell ``i mod cells`` with seed ``SEED0 + i // cells``.
Each case is judged (``judge_graph_case``: the certified truth of the graph, its rounding bound, every
tensor and, where the implementation returns node outputs and deltas, every node on its own) for every
correct implementation: the hand-written reference (``reference/networks.py``), the plain NumPy networks
(``examples/numpy_networks.py``), the torch.nn.functional networks (``examples/torch_networks.py``), the
records composed (``record_candidate()``) and torch's built-ins composed and differentiated by autograd
(``framework_candidate("torch")``; a case it documents it refuses is declined, not judged).

Chunks of cases are judged in ``jobs`` spawned worker processes; one JSON line per case streams to
``OUT/graph_false_alarms.jsonl`` (its id, the case, each implementation's class, its worst error in
units of the tolerance -- a tensor passes below 1 -- and any alarm with its failing rows); ``resume=True``
keeps the lines already there (a truncated last line is cut) and judges only the rest.
``OUT/graph_false_alarms.md`` / ``.json`` summarise per implementation, architecture and dtype. A
correct implementation never fails: any alarm is a false alarm, a defect of bpcheck.
"""
import itertools
import json
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from bpcheck.core.records import load_records
from bpcheck.ops import architectures
from bpcheck.opcheck.candidates import load_module
from bpcheck.opcheck.graph_baselines import CORRECT
from bpcheck.opcheck.graph_candidates import framework_candidate, python_candidate, record_candidate
from bpcheck.ops.graph_cases import draw_graph_case
from bpcheck.opcheck.graph_check import judge_graph_case

__all__ = ["run", "plan", "judge_chunk", "markdown", "WHO", "SEED0"]

WHO = ("reference", "numpy_networks", "torch_networks", "records", "torch")
SEED0 = 5000                    # away from check_graph's and the baselines' seeds (0, 1, 1000, ...)
_CANDIDATES = {}


def _candidate(who, arch):
    """The GraphCandidate ``who`` for ``arch``: a name of ``WHO`` or FILE.py:FUNCTION (the same function for
    every architecture: an injected implementation, as the tests inject a known-bad one)."""
    key = (who, arch)
    if key not in _CANDIDATES:
        if who == "records":
            _CANDIDATES[key] = record_candidate()
        elif who == "torch":
            _CANDIDATES[key] = framework_candidate("torch")
        elif who in CORRECT:
            _CANDIDATES[key] = python_candidate(getattr(load_module(CORRECT[who]), arch), who)
        else:
            path, _, name = who.rpartition(":")
            _CANDIDATES[key] = python_candidate(getattr(load_module(path), name), who)
    return _CANDIDATES[key]


def plan(n, archs=None):
    """The ``n`` cases: dicts with id, arch, family, dtype, seed and size (a dict of dimensions)."""
    cells = [(a.name, family, dtype, size) for a in architectures.ARCHITECTURES.values()
             if archs is None or a.name in archs
             for family, dtype, size in itertools.product(a.families, ("float32", "float64"), a.sizes)]
    found = []
    for i in range(n):
        arch, family, dtype, size = cells[i % len(cells)]
        seed = SEED0 + i // len(cells)
        dims = "".join(f"{k}{v}" for k, v in size.items())
        found.append({"case": f"{arch}/{family}/{dtype}/{dims}/s{seed}", "arch": arch, "family": family,
                      "dtype": dtype, "seed": seed, "size": dict(size)})
    return found


def _worst(rows):
    return max([0.0] + [r["error"] / r["allowed"] for r in rows
                        if r.get("allowed", 0) > 0 and r.get("error") == r.get("error")], default=0.0)


def judge_chunk(task):
    """[one line per case] for ``task = (cases, who)``: each case judged for every implementation of ``who``."""
    specs, who = task
    lines = []
    for spec in specs:
        start = time.perf_counter()
        case = draw_graph_case(spec["arch"], spec["family"], spec["dtype"], spec["seed"], spec["size"])
        line = {**spec, "judged": {}, "worst": {}, "alarms": []}
        for w in who:
            rows, culprit, cls = judge_graph_case(case, _candidate(w, spec["arch"]))
            line["judged"][w] = cls
            if cls == "unsupported":
                line.setdefault("declined", {})[w] = rows[0]["message"]
                continue
            line["worst"][w] = _worst(rows)
            if cls == "bug":
                line["alarms"].append({"who": w, "culprit": culprit and {k: culprit[k] for k in ("node", "tensor", "words")},
                                       "rows": [{k: v for k, v in r.items() if k != "entries"}
                                                for r in rows if r["status"] == "bug"][:5]})
        line["seconds"] = round(time.perf_counter() - start, 4)
        lines.append(line)
    return lines


def run(n, out=Path("reports"), jobs=2, *, who=WHO, archs=None, resume=False, chunk=8, echo=print):
    """Judge ``n`` cases for every implementation of ``who``; ``jobs`` worker processes (1: in this
    process); returns the summary (also written as OUT/graph_false_alarms.json and .md)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "graph_false_alarms.jsonl"
    cases = plan(n, archs)
    done = {r["case"]: r for r in load_records(path, repair=True)} if resume else {}
    if not resume:
        path.write_text("")
    todo = [c for c in cases if c["case"] not in done]
    tasks = [(todo[i:i + chunk], tuple(who)) for i in range(0, len(todo), chunk)]
    start, last, resumed = time.perf_counter(), time.perf_counter(), len(done)
    with open(path, "a", encoding="utf-8") as stream:
        def emit(lines):
            nonlocal last
            for line in lines:
                stream.write(json.dumps(line, default=float) + "\n")
                done[line["case"]] = line
            stream.flush()
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                echo(f"  {len(done)}/{len(cases)} cases, {sum(len(v['alarms']) for v in done.values())} alarms")
        if jobs == 1:
            for task in tasks:
                emit(judge_chunk(task))
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                pending, queue = set(), list(reversed(tasks))
                while queue or pending:
                    while queue and len(pending) < 2 * jobs:
                        pending.add(pool.submit(judge_chunk, queue.pop()))
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        emit(future.result())
    lines = [done[c["case"]] for c in cases if c["case"] in done]
    summary = _summarise(lines, who, n=n, jobs=jobs, resumed=resumed, seconds=time.perf_counter() - start)
    (out / "graph_false_alarms.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    (out / "graph_false_alarms.md").write_text(markdown(summary))
    return summary


def _summarise(lines, who, *, n, jobs, resumed, seconds):
    groups = {}
    for line in lines:
        for w in who:
            g = groups.setdefault((w, line["arch"], line["dtype"]), {"cases": 0, "declined": 0, "alarms": 0, "worst": 0.0})
            cls = line["judged"].get(w)
            g["declined"] += cls == "unsupported"
            g["cases"] += cls in ("pass", "bug")
            g["alarms"] += cls == "bug"
            g["worst"] = max(g["worst"], line["worst"].get(w, 0.0))
    alarms = [{**{k: line[k] for k in ("case", "arch", "family", "dtype", "seed", "size")}, **a}
              for line in lines for a in line["alarms"]]
    return {"cases": len(lines), "requested": n, "judgements": sum(g["cases"] for g in groups.values()),
            "declined": sum(g["declined"] for g in groups.values()), "alarms": len(alarms),
            "alarms_by_who": {w: sum(a["who"] == w for a in alarms) for w in who},
            "who": list(who), "jobs": jobs, "resumed": resumed, "seconds": round(seconds, 1),
            "case_seconds": round(sum(line["seconds"] for line in lines), 1),
            "groups": [{"who": w, "arch": a, "dtype": d, **v} for (w, a, d), v in sorted(groups.items())],
            "first_alarms": alarms[:20]}


def markdown(summary):
    s = summary
    lines = ["# bpcheck graph false-alarm campaign", "",
             f"{s['cases']} whole-network cases (spread evenly over every architecture x family x dtype x listed "
             f"size), each judged for {len(s['who'])} correct implementations ({', '.join(s['who'])}): "
             f"{s['judgements']} judgements, {s['declined']} declined (a framework's documented refusal), "
             f"**{s['alarms']} false alarms**; {s['seconds']} s wall on {s['jobs']} processes "
             f"({s['case_seconds']} s of judging; {s['resumed']} cases kept from an earlier run). *worst*: the "
             "largest error of any tensor of any case in units of its tolerance (a tensor passes below 1). "
             "Regenerate: `bpcheck selftest --graph-false-alarms N`.", "",
             "| implementation | architecture | dtype | cases | declined | false alarms | worst |",
             "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {g['who']} | {g['arch']} | {g['dtype']} | {g['cases']} | {g['declined']} | {g['alarms']} | "
              f"{g['worst']:.3g} |" for g in s["groups"]]
    if s["first_alarms"]:
        lines += ["", "## False alarms (the first 20)", ""]
        for a in s["first_alarms"]:
            rows = "; ".join(f"{r['tensor']}: error {r.get('error', float('nan')):.3g}, allowed "
                             f"{r.get('allowed', float('nan')):.3g}" if "error" in r else f"{r['tensor']}: {r['message']}"
                             for r in a["rows"][:3])
            lines.append(f"- `{a['who']}` on {a['arch']} {a['dtype']} [{a['family']}] seed {a['seed']}, size "
                         f"{a['size']}: {rows}")
    return "\n".join(lines) + "\n"
