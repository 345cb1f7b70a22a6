"""The op zoo's selftest: every slip caught, on every seed, at its tensor, with a hint where one fits.

``python -m bpcheck.opcheck.selftest --out reports [--seeds 10]`` runs ``check_op`` on every member of
``tests/meta/op_zoo`` (realistic wrong layers, CS231n style, each with ``EXPECTED``) for seeds 0..N-1 and
on the correct implementations (``reference/layers.py``, ``examples/cs231n_layers.py``) for the same
seeds, and writes ``OUT/ops_selftest.json`` and ``.md``: per member, the seeds caught, whether the
first wrong tensor of the shrunk case is the expected one on every seed, the hints said, and the
shrunk case; per correct implementation and op, the seeds passed.
"""
import argparse
import json
import time
from pathlib import Path

from bpcheck import ops
from bpcheck.opcheck.candidates import load_module
from bpcheck.opcheck.check import check_op
from bpcheck.opcheck.report import LAYERS

__all__ = ["run", "ZOO"]

ZOO = Path(__file__).resolve().parents[2] / "tests" / "meta" / "op_zoo"


def _first(report):
    rows = [r for r in report.first["rows"] if r["status"] == "bug"]
    return rows[0]["tensor"], sorted({h for r in rows for h in r.get("hints", [])})


def run(out, seeds=10, zoo=ZOO):
    """Judge every member and the correct implementations on ``seeds`` seeds; write the reports."""
    start = time.perf_counter()
    members = []
    for path in sorted(Path(zoo).glob("bug_*.py")):
        module = load_module(path)
        expected = module.EXPECTED
        allowed = {expected["tensor"], *expected.get("also", ())}
        caught, placed, hints, shrunk = 0, 0, set(), None
        for seed in range(seeds):
            report = check_op(expected["op"], layers=module, extended=True, seed=seed, name=path.stem)
            if report.verdict == "fail":
                caught += 1
                tensor, said = _first(report)
                placed += tensor in allowed
                hints.update(said)
                shrunk = shrunk or report.first["case"].describe()
        members.append({"member": path.stem, "op": expected["op"], "tensor": expected["tensor"],
                        "shows_when": expected["shows_when"], "seeds": seeds, "caught": caught,
                        "right_tensor": placed, "hints": sorted(hints), "shrunk_case": shrunk})
    correct = []
    for who, path in LAYERS.items():
        for name, record in ops.REGISTRY.items():
            if record.cs231n:
                passed = sum(check_op(name, layers=str(path), extended=True, seed=s).verdict == "pass"
                             for s in range(seeds))
                correct.append({"implementation": who, "op": name, "seeds": seeds, "passed": passed})
    summary = {"members": len(members), "caught_every_seed": sum(m["caught"] == seeds for m in members),
               "right_tensor_every_seed": sum(m["right_tensor"] == seeds for m in members),
               "with_hint": sum(bool(m["hints"]) for m in members),
               "correct_pairs": len(correct), "correct_pass_every_seed": sum(c["passed"] == seeds for c in correct),
               "seeds": seeds, "seconds": round(time.perf_counter() - start, 1)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ops_selftest.json").write_text(json.dumps({"summary": summary, "members": members,
                                                       "correct": correct}, indent=1) + "\n")
    s = summary
    lines = ["# bpcheck op zoo selftest", "",
             f"{s['members']} realistic slips (`tests/meta/op_zoo`), seeds 0–{seeds - 1}: **{s['caught_every_seed']} "
             f"caught on every seed**, {s['right_tensor_every_seed']} with the expected first wrong tensor on every "
             f"seed, {s['with_hint']} with a hint. Correct implementations: {s['correct_pass_every_seed']} of "
             f"{s['correct_pairs']} (implementation, op) pairs pass on every seed. {s['seconds']} s. Regenerate: "
             "`python -m bpcheck.opcheck.selftest --out reports`.", "",
             "| member | op | expected | caught | right tensor | hints | shrunk case |", "|---|---|---|---:|---:|---|---|"]
    for m in members:
        lines.append(f"| {m['member']} | {m['op']} | {m['tensor']} | {m['caught']}/{seeds} | {m['right_tensor']}/{seeds} "
                     f"| {'; '.join(m['hints']) or '—'} | {m['shrunk_case']} |")
    lines += ["", "| implementation | op | passed |", "|---|---|---:|"]
    lines += [f"| {c['implementation']} | {c['op']} | {c['passed']}/{seeds} |" for c in correct]
    (out / "ops_selftest.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.out, args.seeds)))


if __name__ == "__main__":
    main()
