"""Check a training step: ``check_training`` runs K teacher-forced steps per case and names the first wrong one.

For every dtype and ``cases`` seeds, a training case of ``arch`` (``bpcheck.train.teacher``) is run for K
steps with the candidate's ``step(params, grads, state, hyper) -> (params, state)``; each step is judged
at the candidate's own parameters. A run fails at its first wrong step: the step, the tensor, its worst
entries, the error against the tolerance, and the hints (the optimizer's slips, gradients never zeroed, a
stuck step counter). A step right against a documented convention passes with the convention's note.
"""
import time
from dataclasses import dataclass, field

from bpcheck.opcheck.candidates import Unsupported
from bpcheck.opcheck.check import diagnosis
from bpcheck.train.teacher import draw_train_case, judge_steps

__all__ = ["check_training", "assert_training", "TrainReport"]


@dataclass
class TrainReport:
    arch: str
    optimizer: str
    candidate: str
    runs: int = 0
    steps: int = 0
    failures: int = 0
    conventions: dict = field(default_factory=dict)       # convention name -> steps it explained
    first: dict = None                                     # {"case", "step", "rows", "hints"}
    seconds: float = 0.0
    declined: list = field(default_factory=list)           # why runs were not judged
    stopped: list = field(default_factory=list)            # runs stopped where the update rule is undefined

    @property
    def verdict(self):
        return "fail" if self.failures else ("pass" if self.steps else "none")

    def summary(self):
        head = (f"bpcheck train {self.arch} {self.optimizer}: {self.verdict.upper()} -- {self.candidate}: "
                f"{self.runs} runs, {self.steps} steps judged, {self.failures} failing, in {self.seconds:.1f} s")
        if self.stopped:
            head += ("\n  stopped where the update rule itself is not finite (0/0, e.g. eps = 0 with a zero "
                     "gradient; not a verdict against you): " + ", ".join(self.stopped))
        if self.declined:
            head += f"\n  {len(self.declined)} runs declined: " + "; ".join(sorted(set(self.declined)))
        if self.conventions:
            head += "; conventions: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.conventions.items()))
        if self.first is None:
            return head
        f = self.first
        wrong = [r for r in f["rows"] if r["status"] == "bug"]
        lines = [head, f"first wrong step: {f['step']} of {f['case'].steps} (the steps before it are right)",
                 diagnosis({"case": f["case"], "rows": wrong[:1]}).replace("smallest failing case", "case")]
        if len(wrong) > 1:
            lines.append(f"  and {len(wrong) - 1} more wrong tensors: " + ", ".join(r["tensor"] for r in wrong[1:]))
        lines += [f"  hint: {h}" for h in f["hints"]]
        return "\n".join(lines)


def check_training(arch, optimizer, step_fn, *, name=None, hyper=None, steps=10, cases=2,
                   dtypes=("float32", "float64"), seed=0):
    """Teacher-forced K-step runs of ``step_fn`` (``cases`` per dtype). Returns a ``TrainReport``."""
    report = TrainReport(arch, optimizer, name or getattr(step_fn, "__name__", "step"))
    start = time.perf_counter()
    for dtype in dtypes:
        for k in range(cases):
            case = draw_train_case(arch, optimizer, dtype, seed * 1000 + k, steps=steps, hyper=hyper)
            try:
                log = judge_steps(case, step_fn)
            except Unsupported as exc:
                report.declined.append(str(exc))
                continue
            report.runs += 1
            report.steps += sum(entry["class"] != "undefined" for entry in log)
            if log and log[-1]["class"] == "undefined":
                report.stopped.append(f"{dtype} run {k} at step {log[-1]['step']}")
            for entry in log:
                if entry["class"] == "convention":
                    report.conventions[entry["convention"]] = report.conventions.get(entry["convention"], 0) + 1
            if log and log[-1]["class"] == "bug":
                report.failures += 1
                if report.first is None:
                    report.first = {"case": case, "step": log[-1]["step"], "rows": log[-1]["rows"],
                                    "hints": log[-1].get("hints", [])}
    report.seconds = time.perf_counter() - start
    return report


def assert_training(arch, optimizer, step_fn, **kwargs):
    """``check_training``, raising AssertionError with the diagnosis unless it passes."""
    report = check_training(arch, optimizer, step_fn, **kwargs)
    if report.verdict != "pass":
        raise AssertionError(report.summary())
    return report
