"""Run one case through the truth, the framework oracles and a candidate; compare.

Truth is the high-precision arbiter (``oracles.numeric``, mpmath at 50 digits
from the exact values of the case's numbers). The framework oracles run the
case in its own dtype; their errors against the truth set the candidate's
tolerance (``bpcheck.compare``) and their agreement with each other is checked
on every case.
"""
from dataclasses import dataclass, field
from functools import lru_cache

from bpcheck.backends import load_target
from bpcheck.compare import ORACLES, compare, kink_layers, oracle_rows


@lru_cache(maxsize=None)
def builtin(name):
    return load_target(name, name)


@dataclass
class Judgement:
    case: object
    result: dict
    truth: dict
    oracles: dict
    rows: list = field(default_factory=list)
    oracle_rows: list = field(default_factory=list)
    kinks: list = field(default_factory=list)

    @property
    def failures(self):
        return [r for r in self.rows if r["class"] != "pass"]


def reference_results(case, names=ORACLES):
    """Truth and the named framework oracles' results for a case."""
    truth = builtin("numeric").run(case)
    oracles = {name: builtin(name).run(case) for name in names}
    return truth, oracles


def judge(case, candidate, *, who=None, result=None, truth=None, oracles=None, oracle_names=ORACLES):
    """Judge ``candidate`` (a backend) on ``case``; returns rows for it and for the oracles.

    The candidate runs first, so a case it declines (Unsupported) costs no truth.
    ``result``, ``truth`` and ``oracles`` may be passed in when already computed.
    """
    if result is None:
        result = candidate.run(case)
    if truth is None or oracles is None:
        truth, oracles = reference_results(case, oracle_names)
    who = who or candidate.name
    return Judgement(case, result, truth, oracles,
                     rows=compare(case, result, truth, oracles, who=who),
                     oracle_rows=oracle_rows(case, truth, oracles),
                     kinks=kink_layers(case, truth))
