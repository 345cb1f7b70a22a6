"""Find a failing case with Hypothesis and shrink it to the smallest; ``assert_backprop``.

The property runs under ``@given`` over ``bpcheck.cases.strategies`` with no example
database and no deadline; the test body judges each case and raises when the
candidate is really wrong (class bug or precision, or -- if asked -- when it
raises) *in the same way* as the first failure (``signature``: the tensor and
class of the first wrong link), so the shrink cannot wander off to another failure.
Hypothesis then shrinks: fewer layers, fewer units, a smaller batch, simpler
values. A closure remembers every failing case, so the smallest one is at hand
even when the shrink budget runs out. Two deterministic passes finish the job
where Hypothesis cannot (its depth and widths are integers drawn before the
arrays that depend on them): ``cut_front`` drops the layers before the first
wrong link, ``prune`` drops examples, input features and hidden units.

The judgement is ``bpcheck.judge.judge.judge`` -- the same one every entry point uses.
"""
import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from bpcheck.judge.classify import REAL
from bpcheck.run.backends import AdapterError, PythonBackend, Unsupported, load_target


@dataclass
class Judged:
    """One case judged, keeping what diagnosis needs: the candidate's result and the truth."""
    case: object
    result: dict = None
    truth: dict = None
    rows: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    error: str = None

    @property
    def failures(self):
        return [r for r in self.rows + self.findings if r["class"] in REAL]

    @property
    def failed(self):
        return bool(self.failures) or self.error is not None


def judge_case(case, backend):
    """Run the candidate first (so an unsupported case costs nothing), then the one judgement, its
    case-level findings included (the state check calls the candidate twice more).
    Unsupported propagates; an adapter error is a Judged with ``error``."""
    from bpcheck.judge.judge import judge
    try:
        with np.errstate(all="ignore"):
            result = backend.run(case)
            j = judge(case, result, who=backend.name, rerun=backend.run)
    except AdapterError as exc:
        return Judged(case, error=str(exc))
    return Judged(case, result, j.truth, j.rows, j.findings)


def fingerprint(case):
    h = hashlib.sha1(json.dumps(case.spec, sort_keys=True).encode())
    for name in sorted(case.params):
        h.update(name.encode() + case.params[name].tobytes())
    h.update(case.x.tobytes() + case.y.tobytes() + str(case.y.dtype).encode())
    return h.hexdigest()


@dataclass
class Outcome:
    """What the search found: the smallest failing case, judged with every oracle (or None)."""
    judged: Judged = None
    examples: int = 0
    failing_seen: int = 0
    shrink_seconds: float = 0.0
    search_seconds: float = 0.0
    unsupported: dict = field(default_factory=dict)
    harness_errors: list = field(default_factory=list)
    note: str = ""
    passing: list = field(default_factory=list)      # a few cases that passed, for the explain step


def signature(judged):
    """What kind of failure: the tensor and class of the first wrong link ("delta:bug", "loss:precision",
    ...), the kind of a case-level finding, or "error". The shrink keeps it, so it cannot wander off to
    another failure -- nor from a NaN to a few lost digits in the same tensor."""
    from bpcheck.judge.judge import first_divergence
    if not judged.failures:
        return "error"
    first = first_divergence(judged.rows)
    if first is not None and first["class"] in REAL:
        return f"{first['tensor']}:{first['class']}"
    return next(f["kind"] for f in judged.findings if f["class"] in REAL)


def informative(judged):
    """No gradient of the truth identically zero: every W, b and the input gradient carries signal
    (a shrunk case where x = 0 makes dC/dW_0 zero for right and wrong code alike)."""
    t = judged.truth
    return all(np.any(v) for v in t["grads"].values()) and np.any(t["input_grad"])


def search(backend, strategy, *, max_examples=50, seed=0, shrink=True, budget=60.0, errors_fail=True,
           target=None):
    """Run the property; return an ``Outcome`` with the smallest failing case found.

    Only failures of one kind count (``signature``: ``target``, else the first
    one found), so the shrink cannot wander off to a different failure.
    """
    from hypothesis import HealthCheck, Phase, given, reject, settings
    from hypothesis import seed as hseed
    from hypothesis.errors import Flaky, HypothesisException
    seen, failing, clock = {}, [], {"start": time.monotonic(), "found": None, "target": target}
    outcome = Outcome()

    def fails(case):
        key = fingerprint(case)
        if key in seen:
            if seen[key] is not None:
                failing.append(seen[key])
            return seen[key] is not None
        found = clock["found"]
        if found is not None and time.monotonic() - found > budget:
            return False                      # budget spent: nothing new counts, the shrink ends
        try:
            judged = judge_case(case, backend)
        except Unsupported as exc:
            outcome.unsupported[str(exc)] = outcome.unsupported.get(str(exc), 0) + 1
            reject()
        except Exception as exc:  # an oracle choking on a strange case is not the candidate's failure
            outcome.harness_errors.append(f"{type(exc).__name__}: {exc}")
            return False
        outcome.examples += 1
        bad = bool(judged.failures) or (errors_fail and judged.error is not None)
        if bad and judged.truth is not None and failing and not informative(judged):
            bad = False                       # a shrink to x = 0 hides W's gradient: not the same failure
        if bad:
            clock["target"] = clock["target"] or signature(judged)
            bad = signature(judged) == clock["target"]
        seen[key] = judged if bad else None
        if not bad and judged.error is None and len(outcome.passing) < 20:
            outcome.passing.append(case)
        if bad:
            failing.append(judged)
            clock["found"] = clock["found"] or time.monotonic()
        return bad

    class Found(Exception):
        pass

    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @(hseed(seed) if seed is not None else (lambda f: f))
    @settings(database=None, deadline=None, max_examples=max_examples, phases=phases,
              report_multiple_bugs=False, suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=strategy)
    def prop(case):
        if fails(case):
            raise Found

    from bpcheck.cases.strategies import reproducible
    try:
        with reproducible():
            prop()
    except (Found, Flaky):
        pass
    except HypothesisException as exc:      # e.g. Unsatisfiable: every case was unsupported
        outcome.note = f"{type(exc).__name__}: {exc}"
    outcome.search_seconds = time.monotonic() - clock["start"]
    outcome.failing_seen = len({fingerprint(j.case) for j in failing})
    outcome.judged = confirm(failing, backend, errors_fail=errors_fail, target=clock["target"])
    if shrink and outcome.judged is not None and outcome.judged.failures:
        outcome.judged = prune(cut_front(outcome.judged, backend), backend)
    outcome.shrink_seconds = time.monotonic() - clock["found"] if clock["found"] else 0.0
    return outcome


def cut_front(judged, backend):
    """Hypothesis cannot delete a layer (the depth is one integer drawn before the layers), so do it
    here: cut off the layers before the first wrong link, feeding their output a_{k-1} as the input
    x, which leaves everything downstream as it was. The largest cut that still fails is kept.
    A failure with no row to cut at (only a finding: an extra gradient key, an overwritten input)
    keeps the case whole."""
    from bpcheck.core.spec import Case
    from bpcheck.judge.judge import first_divergence
    first, case = first_divergence(judged.rows), judged.case
    if first is None:
        return judged
    layers = case.spec["layers"]
    for k in range(first.get("layer") or 0, 0, -1):
        spec = {**case.spec, "input_dim": layers[k - 1]["units"], "layers": layers[k:]}
        params = {f"layers.{i - k}.{t}": case.params[f"layers.{i}.{t}"]
                  for i in range(k, len(layers)) for t in "Wb"}
        x = judged.truth["activations"][f"layers.{k - 1}"].astype(case.spec["dtype"])
        try:
            cut = judge_case(Case(spec, params, x, case.y, case.id, dict(case.meta)), backend)
        except Exception:  # Unsupported, or an oracle choking: keep the uncut case
            continue
        if cut.failures and signature(cut) == signature(judged):
            return cut
    return judged


def _without(case, where, k):
    """``case`` without example k (where = "batch"), input feature k (-1) or unit k of layer ``where``."""
    from bpcheck.core.spec import Case
    spec = {**case.spec, "layers": [dict(layer) for layer in case.spec["layers"]]}
    params, x, y = dict(case.params), case.x, case.y
    if where == "batch":
        x, y = np.delete(x, k, axis=0), np.delete(y, k, axis=0)
    elif where == -1:
        spec["input_dim"] -= 1
        x, params["layers.0.W"] = np.delete(x, k, axis=1), np.delete(params["layers.0.W"], k, axis=1)
    else:
        spec["layers"][where]["units"] -= 1
        params[f"layers.{where}.W"] = np.delete(params[f"layers.{where}.W"], k, axis=0)
        params[f"layers.{where}.b"] = np.delete(params[f"layers.{where}.b"], k)
        if where + 1 < len(spec["layers"]):
            params[f"layers.{where + 1}.W"] = np.delete(params[f"layers.{where + 1}.W"], k, axis=1)
        else:                                  # an output unit: its target goes too
            y = np.delete(y, k, axis=1)
    return Case(spec, params, x, y, case.id, dict(case.meta))


def prune(judged, backend, tries=30):
    """Greedily drop examples, input features and hidden units the failure does not need (Hypothesis
    shrinks values well, but a unit's slot among the drawn arrays is hard for it to delete)."""
    target = signature(judged)
    while tries > 0:
        case = judged.case
        dims = [("batch", case.batch), (-1, case.spec["input_dim"])]
        last = len(case.spec["layers"]) - 1
        dims += [(i, layer["units"]) for i, layer in enumerate(case.spec["layers"])
                 if i < last or case.spec["loss"] != "softmax_cross_entropy"]
        slots = [(where, k) for where, n in dims if n > 1 for k in reversed(range(n))][:tries]
        for where, k in slots:
            tries -= 1
            try:
                smaller = judge_case(_without(case, where, k), backend)
            except Exception:  # Unsupported, or an oracle choking: keep what we have
                continue
            if smaller.failures and signature(smaller) == target:
                judged = smaller
                break
        else:
            return judged
    return judged


def confirm(failing, backend, *, errors_fail=True, target=None, tries=5):
    """The smallest failing case seen that fails the way the search was after."""
    done = set()
    for judged in reversed(failing):
        key = fingerprint(judged.case)
        if key in done:
            continue
        done.add(key)
        if (judged.failures or (errors_fail and judged.error)) and signature(judged) == (target or signature(judged)):
            return judged
        if len(done) >= tries:
            break
    return None


def as_backend(target, name=None):
    """A backend from a callable (the Python contract), a target string or a backend."""
    if hasattr(target, "run") and hasattr(target, "name"):
        return target
    if callable(target):
        return PythonBackend(target, name or getattr(target, "__qualname__", repr(target)))
    return load_target(target, name)


def assert_backprop(fn, *, examples=30, dtypes=None, losses=None, activations=None, max_depth=4,
                    seed=0, shrink=True, shrink_budget=30.0, name=None, cases=None):
    """Assert that ``fn`` (``backprop(spec, params, x, y) -> dict``) computes correct gradients.

    Generates ``examples`` cases, judges each against the high-precision truth
    with derived tolerances, and on failure shrinks to the smallest case and
    raises ``AssertionError`` with the diagnosis (first wrong layer, hints).
    Unsupported features (``NotImplementedError``) are skipped. A quarter of the
    cases come from the edge families (``bpcheck.cases.strategies``). Deterministic
    for a given ``seed`` (``None``: a new one each run). Returns the search's
    ``Outcome`` when nothing failed. ``cases``: check exactly these Cases instead
    (regression cases, e.g. ``bpcheck.core.spec.load_case`` of a saved repro), no search.
    """
    __tracebackhide__ = True             # pytest shows the caller's line, not this function's
    from bpcheck.cases import strategies as bst
    from bpcheck.core.spec import ACTIVATIONS, DTYPES, LOSSES
    from bpcheck.diagnose.diagnose import diagnose
    backend = as_backend(fn, name)
    if cases is not None:
        for case in cases:
            judged = judge_case(case, backend)
            if judged.failed:
                raise AssertionError(f"{backend.name} is wrong on case {case.id}: {describe_case(case)}\n"
                                     + (judged.error or diagnose(case, judged.result, judged.truth, judged.rows,
                                                                 judged.findings).text()))
        return Outcome(examples=len(cases))
    strategy = bst.cases(dtypes=dtypes or DTYPES, losses=losses or LOSSES,
                         activations=activations or ACTIVATIONS, max_depth=max_depth, arrays="seeded")
    outcome = search(backend, strategy, max_examples=examples, seed=seed, shrink=shrink, budget=shrink_budget)
    skipped = "".join(f"\n  skipped {n}x: {m}" for m, n in outcome.unsupported.items())
    judged = outcome.judged
    if judged is None:
        if outcome.examples == 0:
            why = "every drawn case was declined:" if outcome.unsupported else f"({outcome.note})"
            raise AssertionError(f"{backend.name}: no case could be checked; {why}{skipped}")
        return outcome
    head = (f"{backend.name} is wrong on a case shrunk to: {describe_case(judged.case)} "
            f"(seed {seed}; {outcome.failing_seen} failing cases seen, "
            f"shrink {outcome.shrink_seconds:.1f} s)")
    if judged.error:
        raise AssertionError(f"{head}\n  {judged.error}{skipped}")
    from bpcheck.diagnose.explain import lines_only_in_failing
    d = diagnose(judged.case, judged.result, judged.truth, judged.rows, judged.findings)
    d.explain = lines_only_in_failing(backend, judged.case, outcome.passing)
    raise AssertionError(f"{head}\n{d.text()}{skipped}")


def describe_case(case):
    """'input_dim 1, layers [tanh 1, identity 1], loss sse, float64, batch 2'."""
    layers = ", ".join(f"{l['activation']} {l['units']}" for l in case.spec["layers"])
    return (f"input_dim {case.spec['input_dim']}, layers [{layers}], loss {case.spec['loss']}, "
            f"{case.spec['dtype']}, batch {case.batch}")


__all__ = ["assert_backprop", "search", "signature", "judge_case", "Judged", "Outcome"]
