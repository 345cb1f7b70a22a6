"""Training benchmarks: seconds to check K teacher-forced steps, against K, and the envelope's cost.

    .venv/bin/python benchmarks/train.py            (make bench runs it)

Writes benchmarks/train_results.json and train_results.md. Each measurement runs in a fresh interpreter
(``common.in_child``): ``check_training`` of reference/optim.py's Adam on the residual MLP (one float32
run: every step's certified gradient at the candidate's parameters, the exact and rounding-model updates
along five tracks -- the definition, its convention, two slips, the generic slips -- and the judgement),
and the free-running envelope (8 perturbed float64 trajectories) for the same K. Nothing asserts a time.
"""
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks.common import HERE, in_child, machine  # noqa: E402

STEPS = [5, 10, 20, 50, 100]


def teacher(params):
    from bpcheck.train.check import check_training
    from reference import optim
    start = time.perf_counter()
    report = check_training("residual_mlp", params["optimizer"], getattr(optim, params["optimizer"]),
                            steps=params["steps"], cases=1, dtypes=("float32",))
    return {"seconds": time.perf_counter() - start, "steps": report.steps, "verdict": report.verdict}


def free_running(params):
    from bpcheck.train.envelope import envelope
    from bpcheck.train.teacher import draw_train_case
    from reference import optim
    case = draw_train_case("residual_mlp", params["optimizer"], "float32", 0, steps=params["steps"])
    start = time.perf_counter()
    envelope(case, getattr(optim, params["optimizer"]))
    return {"seconds": time.perf_counter() - start}


def main():
    result = {"machine": machine(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": []}
    for optimizer in ("sgd", "adam"):
        for k in STEPS:
            row = {"optimizer": optimizer, "steps": k,
                   "teacher": in_child("train:teacher", {"optimizer": optimizer, "steps": k}),
                   "envelope": in_child("train:free_running", {"optimizer": optimizer, "steps": k})}
            result["rows"].append(row)
            print(json.dumps(row))
    (HERE / "train_results.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Training benchmarks", "",
             f"Measured {result['when']} on {result['machine'].get('cpu_count', '?')} CPUs; regenerate with "
             "`.venv/bin/python benchmarks/train.py` (or `make bench`).", "",
             "Residual MLP (N=3..4, D=4..5), one float32 run, `reference/optim.py`. Teacher-forced: K steps, each "
             "judged (certified gradient at the candidate's parameters, exact and rounding-model updates). "
             "Envelope: 8 perturbed trajectories plus the truth and the candidate, K steps each.", "",
             "| optimizer | K | teacher-forced check (s) | per step (ms) | envelope (s) |", "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        t = r["teacher"]
        lines.append(f"| {r['optimizer']} | {r['steps']} | {t['seconds']:.2f} | {1000 * t['seconds'] / t['steps']:.0f} "
                     f"| {r['envelope']['seconds']:.2f} |")
    (HERE / "train_results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
