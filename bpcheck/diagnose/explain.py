"""Which lines of the candidate's source run only in failing cases: the explain step of a diagnosis.

Hypothesis's explain phase prints, for a failing property, the lines covered by
failing examples and by no passing one. ``bpcheck`` does the same for a Python
target: the shrunk failing case and up to ``PASSING`` passing cases of the run
are called again with line tracing (``sys.settrace``, only inside the target's
own source file), and the lines the failing call ran that no passing call ran
are named. For a slip in a branch (an overflow guard, a ``z == 0`` case, a batch
of one) that is the line; for a slip on a line every call runs, nothing is
named and the diagnosis's hints speak instead. Tracing (``bpcheck.run.backends.traced_call``)
happens where the target runs: in its worker process (``bpcheck.run.pyworker``, request
field ``trace``) or in this process for an in-process target.
"""
import linecache

PASSING = 20


def lines_only_in_failing(backend, failing, passing):
    """Source lines the failing case ran and no passing case did: ["file.py:42: <source>", ...]."""
    trace = getattr(backend, "trace_lines", None)
    if trace is None:
        return []
    bad = trace(failing)
    if not bad:
        return []
    good = set()
    for case in passing[:PASSING]:
        good |= trace(case)
    out = []
    for filename, lineno in sorted(bad - good):
        source = linecache.getline(filename, lineno).strip()
        out.append(f"{filename.rsplit('/', 1)[-1]}:{lineno}: {source}")
    return out
