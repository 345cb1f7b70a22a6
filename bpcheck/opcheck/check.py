"""Check one op: every edge family of its record, in both dtypes, judged against the certified truth.

``check_op(op, candidate)`` draws the covering set (``bpcheck.ops.cases.cases``: every family x dtype x
``per_family`` cases, so each edge region is visited on every run), computes each case's truth and
rounding bound, runs the candidate and judges it (``bpcheck.opcheck.judge``). Then a state check: the
candidate is called on a plain case, on the same shapes with other values, and on the first again; a
different second answer is a bug of its own (``state``). On a failure it takes the
failing case whose first wrong tensor comes earliest (the output before the gradients), the smallest
of those, and shrinks it with the record's shrink rules (fewer rows, features, channels, smaller windows)
while the same tensor stays wrong, and says which tensor, which entries, by how much against the
tolerance, and the hints. ``assert_op`` raises ``AssertionError`` with that diagnosis (pytest-friendly).
"""
import time
from dataclasses import dataclass, field, replace

import numpy as np

from bpcheck import ops
from bpcheck.opcheck import candidates as cand
from bpcheck.ops.cases import cases, save, with_draw
from bpcheck.ops.exact import bound, truth
from bpcheck.opcheck.judge import judge
from bpcheck.ops.record import Draw

__all__ = ["check_op", "assert_op", "OpReport", "judge_case", "as_candidate"]

SHRINK_TRIES = 200


@dataclass
class OpReport:
    op: str
    candidate: str
    cases: int = 0
    failures: int = 0
    notes: dict = field(default_factory=dict)         # class -> count (tie)
    coverage: dict = field(default_factory=dict)      # (family, dtype) -> cases judged
    first: dict = None                                # the shrunk failing case: case, rows, class
    seconds: float = 0.0
    error: str = None                                 # why the run stopped (the candidate cannot run)

    @property
    def verdict(self):
        """"error" if the candidate could not be run at all, "fail" if any case is wrong, "none" if no
        case was judged (every one declined), else "pass"."""
        if self.error:
            return "error"
        return "fail" if self.failures else ("pass" if self.cases else "none")

    def summary(self):
        met = sum(1 for v in self.coverage.values() if v)
        missed = sorted({f for (f, _), v in self.coverage.items() if not v})
        head = (f"bpcheck op {self.op}: {self.verdict.upper()} -- {self.candidate}: {self.cases} cases, "
                f"{self.failures} failing; {met}/{len(self.coverage)} (family x dtype) cells met"
                f" in {self.seconds:.1f} s")
        if missed:
            head += "\n  families not judged (every case declined): " + ", ".join(missed)
        if self.error:
            head += f"\n  stopped: {self.error}"
        if self.notes:
            head += "; notes: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.notes.items()))
        return head if self.first is None else head + "\n" + diagnosis(self.first)


def diagnosis(first):
    """Plain words for a failing case: the case, then each wrong tensor with entries and hints."""
    case, rows = first["case"], first["rows"]
    lines = [f"smallest failing case: {case.describe()}"]
    for r in rows:
        if r["status"] != "bug":
            continue
        if "error" not in r:
            lines.append(f"  {r['tensor']}: {r['message']}")
            continue
        if r.get("truth_norm", 1.0) == 0:
            lines.append(f"  {r['tensor']}: wrong -- its exact value rounds to 0; error {r['error']:.3g} against an "
                         f"absolute tolerance of {r['allowed']:.3g} (2-norms)")
        else:
            lines.append(f"  {r['tensor']}: wrong -- error {r['err_u']:.3g} u against a tolerance of "
                         f"{r['tol_u']:.3g} u (scale {r['scale']:.4g}, cosine {r['cosine']:.4g})")
        for idx, got, want in r["entries"]:
            lines.append(f"    at {idx}: got {got:.9g}, expected {want:.9g}")
        for h in r.get("hints", []):
            lines.append(f"    hint: {h}")
    return "\n".join(lines)


def as_candidate(*, layers=None, torch=None, jax=None, candidate=None, name=None, extended=False):
    """One Candidate from exactly one of the ways in."""
    given = [x for x in (layers, torch, jax, candidate) if x is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of layers=, torch=, jax= or candidate=")
    if candidate is not None:
        return candidate
    if layers is not None:
        return cand.cs231n(layers, name, extended)
    return cand.torch_function(torch, name) if torch is not None else cand.jax_function(jax, name)


def judge_case(op, candidate, case):
    """(rows, class) of one case: truth, bound, the candidate's run, the judgement."""
    t, b = truth(op, case), bound(op, case)
    try:
        result = candidate.run(op, case)
    except cand.CandidateFatal:
        raise
    except cand.Unsupported as exc:
        return [{"tensor": "call", "status": "unsupported", "message": str(exc)}], "unsupported"
    except cand.CandidateError as exc:
        return [{"tensor": "call", "status": "bug", "message": str(exc)}], "bug"
    rows, cls = judge(op, case, result, t, b)
    for conv in op.conventions if cls == "bug" else ():
        variant = replace(op, forward=conv.forward, vjp=conv.vjp, conventions=())
        conv_rows, conv_cls = judge(variant, case, result, truth(variant, case), b)
        if conv_cls != "bug":
            for r in conv_rows:
                if r["status"] == "pass" and next(x for x in rows if x["tensor"] == r["tensor"])["status"] == "bug":
                    r.update(status="convention", message=conv.note)
            return conv_rows, "convention"
    return rows, cls


def _rank(op, rows):
    """Where a case's first wrong tensor sits: the output first (a wrong forward explains the wrong
    gradients after it), then the gradients in input order, then a crash or a finding."""
    order = {t: i for i, t in enumerate(("out",) + tuple("d" + k for k in op.inputs))}
    return min(order.get(r["tensor"], len(order)) for r in rows if r["status"] == "bug")


def _first_bug(rows):
    return next((r["tensor"] for r in rows if r["status"] == "bug"), None)


def _shrink(op, candidate, case, rows):
    """Greedy: take the first smaller draw on which the same tensor is still wrong, until none is."""
    if op.shrink is None:
        return case, rows
    target, tries = _first_bug(rows), 0
    improved = True
    while improved and tries < SHRINK_TRIES:
        improved = False
        draw = Draw(case.inputs, case.constants, case.hyper)
        for smaller in op.shrink(draw):
            tries += 1
            trial = with_draw(op, case, smaller)
            try:
                trial_rows, cls = judge_case(op, candidate, trial)
            except (ArithmeticError, ValueError, IndexError, cand.CandidateFatal):
                continue
            if cls == "bug" and _first_bug(trial_rows) == target:
                case, rows, improved = trial, trial_rows, True
                break
            if tries >= SHRINK_TRIES:
                break
    return case, rows


def _state_check(op, candidate, case):
    """Rows of a finding if calling the candidate on ``case``, then on the same shapes with other
    values, then on ``case`` again gives a different second answer (state kept across calls: a
    gradient buffer never zeroed, a cache reused), else []. The second answer is also judged."""
    other = replace(case, inputs={k: (v * 1.5 + 0.25).astype(v.dtype) for k, v in case.inputs.items()},
                    cotangent=(case.cotangent * -0.75).astype(case.cotangent.dtype))
    try:
        first = candidate.run(op, case)
        candidate.run(op, other)
        again = candidate.run(op, case)
    except (cand.CandidateError, cand.Unsupported):
        return []                                    # the ordinary cases report a candidate that raises
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in
               [(first["out"], again["out"])] + [(first["grads"][k], again["grads"].get(k)) for k in first["grads"]
                                                 if again["grads"].get(k) is not None])
    if same:
        return []
    rows, _ = judge(op, case, again, truth(op, case), bound(op, case))
    return [{"tensor": "state", "status": "bug", "message": "the same call gave a different answer after a call "
             "on other values: state kept across calls (a gradient buffer never zeroed, a cache reused)"}] + rows


def check_op(op, *, layers=None, torch=None, jax=None, candidate=None, name=None, extended=False,
             dtypes=("float32", "float64"), per_family=4, seed=0, shrink=True, save_to=None):
    """Judge a candidate for ``op`` (a name or a record) on the covering set of its families.

    Exactly one of: ``layers`` (a CS231n-style module or its path), ``torch`` (a callable on tensors,
    ``torch.autograd.Function.apply`` included), ``jax`` (a function on JAX arrays, ``jax.custom_vjp``
    included), ``candidate`` (a ``bpcheck.opcheck.candidates.Candidate``). Returns an ``OpReport``; with
    ``save_to`` (a path without suffix) the shrunk failing case is saved there (.json + .npz).
    ``extended``: the layers module takes the contract's extensions (docs/layers_contract.md).
    Cases the candidate declines (``Unsupported``) are counted in ``notes``, never judged.
    Raises ValueError for an unknown op or a malformed way in.
    """
    op = ops.get(op) if isinstance(op, str) else op
    who = as_candidate(layers=layers, torch=torch, jax=jax, candidate=candidate, name=name, extended=extended)
    report = OpReport(op.name, who.name)
    start = time.perf_counter()
    failing = []
    for case in cases(op, dtypes, per_family, seed):
        try:
            rows, cls = judge_case(op, who, case)
        except cand.CandidateFatal as exc:
            report.error = str(exc)
            break
        report.coverage.setdefault((case.family, case.dtype), 0)
        if cls == "unsupported":
            report.notes[cls] = report.notes.get(cls, 0) + 1
            continue
        report.cases += 1
        report.coverage[(case.family, case.dtype)] += 1
        if cls == "bug":
            report.failures += 1
            failing.append((_rank(op, rows), case.size, len(failing), case, rows))
        elif cls != "pass":
            report.notes[cls] = report.notes.get(cls, 0) + 1
    plain = next((c for c in cases(op, dtypes, 1, seed) if c.family == "plain"), None)
    state = _state_check(op, who, plain) if plain is not None and not report.error else []
    if state:
        report.failures += 1
        failing.append((-1, plain.size, -1, plain, state))
    if failing and not report.error:
        *_, case, rows = min(failing, key=lambda f: f[:3])
        if shrink:
            case, rows = _shrink(op, who, case, rows)
        report.first = {"case": case, "rows": rows}
        if save_to is not None:
            save(case, save_to)
    report.seconds = time.perf_counter() - start
    return report


def assert_op(op, **kwargs):
    """``check_op`` that raises ``AssertionError`` with the diagnosis when the candidate fails."""
    __tracebackhide__ = True
    report = check_op(op, **kwargs)
    if report.verdict != "pass":
        raise AssertionError(report.summary() + ("\n  nothing was judged" if report.verdict == "none" else ""))
    return report
