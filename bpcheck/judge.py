"""The one judgement: a candidate's result on one case, against the truth, row by row, with a verdict.

Every entry point -- ``bpcheck validate``, ``bpcheck report``, ``assert_backprop``,
the pytest plugin and property tests, the golden vectors' check and the repro
script (which carries a copy of the rule, tested to agree) -- calls ``judge``:

1. the truth: the arbiter's exact values (``bpcheck.truth``);
2. the tolerances: the running error bound of the definitions in the case's
   dtype (``bpcheck.bounds``), times ``compare.SAFETY``;
3. the rows: every tensor compared (``bpcheck.compare``), wrong shapes, dtypes
   and missing gradients included;
4. the classes of the failing rows, by evidence (``bpcheck.classify``);
5. case-level findings the backend reports (inputs overwritten, two identical
   calls that disagree, gradient keys that name no parameter): class bug.

``Judgement.verdict`` is "pass" (nothing in ``REAL``; notes allowed), "fail",
or with ``strict=True`` "fail" on any note as well. Framework oracles are
judged with the same function (``who="torch"``); they never change a
candidate's tolerance.
"""
from dataclasses import dataclass, field

from bpcheck.bounds import running_bounds
from bpcheck.classify import NOTES, REAL, classify
from bpcheck.compare import SAFETY, compare
from bpcheck.truth import exact


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


def judge(case, result, *, who="candidate", truth=None, bounds=None, findings=(), conventions=True):
    """Judge ``result`` (a validated Result dict, ``bpcheck.spec.validate_result``) on ``case``.

    ``truth`` and ``bounds`` may be passed in when already computed for this case.
    Unknown gradient keys in the result become a finding. Raises what the arbiter raises
    (ValueError for an unknown activation or loss, ArithmeticError).
    """
    truth = exact(case) if truth is None else truth
    bounds = running_bounds(case, truth, safety=SAFETY) if bounds is None else bounds
    rows = compare(case, result, truth, bounds, who=who, problems=result.get("problems", ()))
    evaluate = (lambda spec: exact(case, spec)) if conventions else None
    classify(case, result, truth, bounds, rows, evaluate=evaluate)
    findings = list(findings)
    if result.get("unknown_keys"):
        findings.append({"class": "bug", "kind": "unknown_keys",
                         "message": f"gradients for parameters that do not exist: {result['unknown_keys']} "
                                    "(expected layers.{i}.W and layers.{i}.b)"})
    return Judgement(case, result, truth, bounds, rows, findings)
