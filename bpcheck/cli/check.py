"""``bpcheck check CASE.json TARGET``: the whole judgement of one saved case, row by row.

A case file is what ``bpcheck validate`` saves beside a repro (``<id>.json`` +
``<id>.npz``, the format of ``bpcheck.core.spec.save_case``; JSON Schema
``bpcheck/schemas/case.schema.json``). This command runs TARGET (or an
``--exec`` program) on it, judges it with ``bpcheck.judge.judge`` -- the state check
included: the implementation is called three times (the case, the same shapes
with other values, the case again) -- and prints every tensor's error,
tolerance and class, the case-level findings and the diagnosis. Exit 0 pass,
1 a real discrepancy, 2 bad input (a one-line error naming what is wrong) or
an implementation that raised, crashed or hung.
"""
import sys

import click


def check_case(path, target=None, exec_command=None, *, timeout=10.0, in_process=False, strict=False):
    """(exit code, lines) for one case file; raises SpecError for a bad case file."""
    import shlex

    import numpy as np

    from bpcheck.core.spec import load_case
    from bpcheck.diagnose.diagnose import diagnose
    from bpcheck.judge.compare import describe, where
    from bpcheck.judge.judge import judge
    from bpcheck.run.backends import AdapterError, Unsupported
    from bpcheck.run.pool import Candidate
    case = load_case(path)
    candidate = (Candidate(argv=tuple(shlex.split(exec_command)), timeout=timeout) if exec_command
                 else Candidate(target=target, isolate=not in_process, timeout=timeout))
    backend = candidate.build()
    try:
        with np.errstate(all="ignore"):
            result = backend.run(case)
            j = judge(case, result, who=candidate.label, rerun=backend.run)     # the state check included
    except Unsupported as exc:
        return 2, [f"the implementation declined this case: {exc}"]
    except AdapterError as exc:
        return 2, [f"error: {exc}"]
    finally:
        if hasattr(backend, "close"):
            backend.close()
    lines = [f"case {case.id}: {case.spec}, batch {case.batch}"]
    for r in j.rows:
        status = "ok" if r["class"] == "pass" else r["class"]
        lines.append(f"  {where(r):36} error {r['err_u']:10.3g} u  tolerance {r['tol_u']:10.3g} u  {status}")
    for f in j.findings:
        lines.append(f"  {f['class']}: {f['message']}")
    if j.verdict(strict) == "fail":
        lines += ["", diagnose(case, result, j.truth, j.rows, j.findings).text()]
    elif j.notes:
        lines += ["", *(describe(r) for r in j.notes[:5])]
    lines.append(f"verdict: {j.verdict(strict).upper()}")
    return (1 if j.verdict(strict) == "fail" else 0), lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("case_file", type=click.Path(dir_okay=False))
@click.argument("target", required=False)
@click.option("--exec", "exec_command", metavar="COMMAND", help="A program speaking bpcheck/1 instead of TARGET.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--in-process", is_flag=True, help="Call a Python TARGET in this process.")
@click.option("--strict", is_flag=True, help="Fail on notes too (kink, convention, dtype_limit).")
def check_command(case_file, target, exec_command, timeout, in_process, strict):
    """Judge TARGET (module:function or file.py:function) or an --exec program on CASE_FILE."""
    from bpcheck.core.spec import SpecError
    if bool(target) == bool(exec_command):
        raise click.UsageError("give exactly one of TARGET or --exec COMMAND")
    try:
        code, lines = check_case(case_file, target, exec_command, timeout=timeout, in_process=in_process,
                                 strict=strict)
    except (SpecError, ValueError) as exc:
        click.echo(f"bpcheck check: {exc}", err=True)
        sys.exit(2)
    click.echo("\n".join(lines), err=code == 2)
    sys.exit(code)


__all__ = ["check_case", "check_command"]
