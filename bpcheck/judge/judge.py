"""The one judgement: a candidate's result on one case, against the truth, row by row, with a verdict.

Every entry point -- ``bpcheck validate``, ``bpcheck report``, ``assert_backprop``,
the pytest plugin and property tests, the golden vectors' check and the repro
script (which carries a copy of the rule, tested to agree) -- calls ``judge``:

1. the truth: the arbiter's exact values (``bpcheck.exact.truth``);
2. the tolerances: the running error bound of the definitions in the case's
   dtype (``bpcheck.judge.bounds``), times ``compare.SAFETY``;
3. the rows: every tensor compared (``bpcheck.judge.compare``), wrong shapes, dtypes
   and missing gradients included;
4. the classes of the failing rows, by evidence (``bpcheck.judge.classify``);
5. the case-level findings, class bug (``contract_findings``, ``state_findings``):
   inputs the call overwrote in place (the backends compare every input array
   after the call: ``result["mutated"]``), gradient keys that name no parameter,
   and -- given ``rerun``, a way to call the candidate again -- state kept
   across calls: call B (``other_values``: A's shapes, other values), then A
   again; the repeat of A must agree with the first call, and B, put back into
   A's layout, must pass A's judgement. The finding says which call's data
   leaked into which.

``Judgement.verdict`` is "pass" (nothing in ``REAL``; notes allowed), "fail",
or with ``strict=True`` "fail" on any note as well. Framework oracles are
judged with the same function (``who="torch"``); they never change a
candidate's tolerance.
"""
from dataclasses import dataclass, field

import numpy as np

from bpcheck.core.rounding import norm2
from bpcheck.core.spec import Case
from bpcheck.exact.truth import exact
from bpcheck.judge.bounds import running_bounds
from bpcheck.judge.classify import NOTES, REAL, classify
from bpcheck.judge.compare import SAFETY, allowed_error, compare, lookup, tensors

RERUN_WHEN = ("always", "failing")
_TENSORS = ("delta", "b", "W")


def chain_order(rows):
    """Rows in chain-rule order: activations (forward), loss, then from the output layer by layer
    delta, b, W, and last the input gradient."""
    depth = 1 + max((r["layer"] for r in rows if r["layer"] is not None), default=-1)

    def key(row):
        if row["tensor"] == "activation":
            return (0, row["layer"], 0)
        if row["tensor"] == "loss":
            return (1, 0, 0)
        if row["tensor"] == "input_grad":
            return (3, 0, 0)
        return (2, depth - row["layer"], _TENSORS.index(row["tensor"]))
    return sorted(rows, key=key)


def first_divergence(rows):
    """The first really wrong row in chain order (else the first failing one, else None)."""
    ordered = chain_order(rows)
    return (next((r for r in ordered if r["class"] in REAL), None)
            or next((r for r in ordered if r["class"] != "pass"), None))


@dataclass
class Judgement:
    case: object
    result: dict
    truth: dict
    bounds: object
    rows: list = field(default_factory=list)
    findings: list = field(default_factory=list)   # case-level: {"class", "kind", "message"}

    @property
    def failures(self):
        """Rows whose class fails a run (bug, precision)."""
        return [r for r in self.rows if r["class"] in REAL]

    @property
    def notes(self):
        return [r for r in self.rows if r["class"] in NOTES]

    def verdict(self, strict=False):
        bad = REAL + (NOTES if strict else ())
        if any(r["class"] in bad for r in self.rows) or any(f["class"] in bad for f in self.findings):
            return "fail"
        return "pass"

    def classes(self):
        """Counts of row and finding classes other than pass."""
        out = {}
        for item in self.rows + self.findings:
            if item["class"] != "pass":
                out[item["class"]] = out.get(item["class"], 0) + 1
        return out


def judge(case, result, *, who="candidate", truth=None, bounds=None, conventions=True, rerun=None,
          rerun_when="always"):
    """Judge ``result`` (a validated Result dict, ``bpcheck.core.spec.validate_result``) on ``case``: rows
    and case-level findings.

    ``truth`` and ``bounds`` may be passed in when already computed for this case. The contract
    findings (``contract_findings``: inputs overwritten, unknown gradient keys) come from ``result``
    itself. ``rerun(case) -> result`` calls the candidate again (a backend's ``run``); given, the
    state check (``state_findings``: calls B, then A again) runs -- on every case
    (``rerun_when="always"``) or only where the verdict is already "fail" (``"failing"``).
    Raises ValueError for an unknown ``rerun_when``, what the arbiter raises (ValueError for an
    unknown activation or loss, ArithmeticError) and what ``rerun`` raises (e.g.
    ``bpcheck.run.backends.AdapterError``, ``Unsupported``).
    """
    if rerun_when not in RERUN_WHEN:
        raise ValueError(f"rerun_when {rerun_when!r}: expected one of {RERUN_WHEN}")
    truth = exact(case) if truth is None else truth
    bounds = running_bounds(case, truth, safety=SAFETY) if bounds is None else bounds
    rows = compare(case, result, truth, bounds, who=who, problems=result.get("problems", ()))
    evaluate = (lambda spec: exact(case, spec)) if conventions else None
    classify(case, result, truth, bounds, rows, evaluate=evaluate)
    j = Judgement(case, result, truth, bounds, rows, contract_findings(result))
    if rerun is not None and (rerun_when == "always" or j.verdict() == "fail"):
        j.findings += state_findings(case, result, rerun, truth=truth, bounds=bounds, rows=rows, who=who,
                                     conventions=conventions)
    return j


def contract_findings(result):
    """The findings ``result`` carries itself (class bug): the inputs the call overwrote in place
    (``result["mutated"]``, filled by the backends) and gradient keys that name no parameter
    (``result["unknown_keys"]``, filled by ``validate_result``). Raises nothing."""
    out = []
    if result.get("mutated"):
        out.append({"class": "bug", "kind": "mutated_input",
                    "message": f"your backprop overwrote its input {', '.join(result['mutated'])} in place "
                               "(a caller that reuses its arrays gets them back changed)"})
    if result.get("unknown_keys"):
        out.append({"class": "bug", "kind": "unknown_keys",
                    "message": f"gradients for parameters that do not exist: {result['unknown_keys']} "
                               "(expected layers.{i}.W and layers.{i}.b)"})
    return out


def _shift(n):
    """A fixed permutation that moves every index when n > 1: position k takes k + 1's entry."""
    return np.roll(np.arange(n), -1)


def other_values(case):
    """Call B of the state check: ``(case_b, back)``.

    ``case_b`` is ``case`` with its examples, its input features and every layer's units reordered
    (a cyclic shift; the targets follow the output units, class indices renumbered): the same spec
    and shapes, other values wherever a dimension exceeds 1 (a case that is 1 wide everywhere stays
    as it is). ``back(result_b)`` puts a result on ``case_b`` into ``case``'s layout. The exact values
    of ``case_b`` are those of ``case`` reordered, and the rounding bounds cover any order of
    summation, so a stateless correct implementation passes ``case``'s judgement with
    ``back(result_b)``: no arbiter call is needed. Raises nothing for a valid case.
    """
    spec = case.spec
    rows = _shift(case.batch)
    units = [_shift(spec["input_dim"])] + [_shift(layer["units"]) for layer in spec["layers"]]
    params = {}
    for i in range(len(spec["layers"])):
        params[f"layers.{i}.W"] = case.params[f"layers.{i}.W"][np.ix_(units[i + 1], units[i])]
        params[f"layers.{i}.b"] = case.params[f"layers.{i}.b"][units[i + 1]]
    x = case.x[np.ix_(rows, units[0])]
    if spec["loss"] == "softmax_cross_entropy":     # B's output unit j is A's unit units[-1][j]
        y = np.argsort(units[-1])[case.y[rows]].astype(case.y.dtype)
    else:
        y = case.y[np.ix_(rows, units[-1])]
    case_b = Case({**spec, "layers": [dict(layer) for layer in spec["layers"]]}, params, x, y,
                  f"{case.id}-B", dict(case.meta))

    def undo(arr, *order):
        """An array of B's layout in A's (a wrong shape is left as it is: compare reports it)."""
        arr = np.asarray(arr)
        if arr.shape != tuple(len(o) for o in order):
            return arr
        out = np.empty_like(arr)
        out[np.ix_(*order)] = arr
        return out

    def back(result):
        out = {**result, "grads": dict(result["grads"])}
        for i in range(len(spec["layers"])):
            for name, order in ((f"layers.{i}.W", (units[i + 1], units[i])), (f"layers.{i}.b", (units[i + 1],))):
                if name in out["grads"]:
                    out["grads"][name] = undo(out["grads"][name], *order)
        if out.get("input_grad") is not None:
            out["input_grad"] = undo(out["input_grad"], rows, units[0])
        for kind in ("pre_activations", "activations", "deltas", "local_derivatives"):
            if isinstance(result.get(kind), dict):
                out[kind] = {k: undo(v, rows, units[int(k.split(".")[1]) + 1]) for k, v in result[kind].items()}
        return out
    return case_b, back


def repeat_finding(case, first, second, bounds):
    """A finding (class bug, kind "nondeterministic") if two calls on ``case`` differ by more than
    the tolerance of some tensor (or in where they are finite), else None. Raises nothing."""
    for layer, tensor, g in tensors(first, case.spec):
        h = lookup(second, layer, tensor)
        if g is None or h is None or np.shape(g) != np.shape(h):
            continue
        g, h = np.asarray(g, np.float64), np.asarray(h, np.float64)
        if np.array_equal(g, h, equal_nan=True):
            continue
        allowed = allowed_error(bounds, layer, tensor, case.spec["dtype"], g.size, truth_norm=norm2(g))
        if not np.all(np.isfinite(g) == np.isfinite(h)) or norm2(np.nan_to_num(g - h)) > allowed:
            return {"class": "bug", "kind": "nondeterministic",
                    "message": f"results differ between two identical calls ({_where(layer, tensor)} first): "
                               "the repeat of call A, made after call B (A's shapes, other values), differs "
                               "from the first -- data from call B leaked into it (state kept across calls), "
                               "or the results are random (uninitialised memory?)"}
    return None


def _where(layer, tensor):
    return tensor if layer is None else f"layer {layer} {tensor}"


def state_findings(case, result, rerun, *, truth, bounds, rows, who="candidate", conventions=True):
    """State kept across calls, found by calling the candidate twice more after call A (``result``):
    B (``other_values``: A's shapes, other values), then A again.

    - A's repeat differs from A beyond the tolerance: data from call B leaked into it
      (``repeat_finding``, kind "nondeterministic");
    - else, if A passed (no row of class bug or precision), B put back into A's layout must pass
      A's judgement too; if it does not, data from call A leaked into call B (kind "state_leak";
      a cache refreshed only when a shape changes does this).

    Returns a list of findings (class bug), empty when none. Raises what ``rerun`` raises and
    what ``judge`` raises.
    """
    case_b, back = other_values(case)
    result_b = rerun(case_b)
    again = rerun(case)
    found = repeat_finding(case, result, again, bounds)
    if found:
        return [found]
    if any(r["class"] in REAL for r in rows):
        return []
    with np.errstate(all="ignore"):
        jb = judge(case, back(result_b), who=who, truth=truth, bounds=bounds, conventions=conventions)
    first = first_divergence(jb.failures)
    if first is None:
        return []
    error = "not finite" if not np.isfinite(first["err_u"]) else f"error {first['err_u']:.3g} u"
    return [{"class": "bug", "kind": "state_leak",
             "message": f"call B -- call A's case with its examples, input features and units reordered, "
                        f"made right after A -- is wrong ({_where(first['layer'], first['tensor'])} first: "
                        f"{error} > tolerance {first['tol_u']:.3g} u) though A passed: data from call A leaked "
                        "into call B (state kept across calls, e.g. a cache refreshed only when a shape "
                        "changes)"}]
