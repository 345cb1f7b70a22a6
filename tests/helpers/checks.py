"""The property check every property test and entry-point test applies to a candidate on one case."""
import numpy as np
from hypothesis import currently_in_test_context, event, note, reject

from bpcheck.judge.compare import describe
from bpcheck.judge.judge import judge
from bpcheck.run.backends import Unsupported


def check_agreement(case, candidate):
    """Assert that ``candidate`` passes ``case`` (notes allowed), case-level findings included: inputs
    overwritten, unknown gradient keys, and state kept across calls (``bpcheck.judge.judge.state_findings``
    calls the candidate twice more on every case, so that a failure replays the same way); return the
    Judgement. Raises AssertionError naming each failing row and finding; a case the candidate
    declines is rejected (Hypothesis's ``reject``)."""
    try:
        with np.errstate(all="ignore"):
            result = candidate.run(case)
            j = judge(case, result, who=candidate.name, rerun=candidate.run)
    except Unsupported as exc:
        event(f"rejected: {str(exc)[:60]}")
        reject()
    if currently_in_test_context():
        note(f"spec: {case.spec}, batch {case.batch}, family {case.meta.get('family')}")
        event(f"family {case.meta.get('family')}")
        for n in j.notes:
            event(f"note: {n['class']}")
    bad = j.failures + [f for f in j.findings if f["class"] in ("bug", "precision")]
    assert j.verdict() == "pass", "\n".join(describe(r) if "tensor" in r else r["message"] for r in bad)
    return j
