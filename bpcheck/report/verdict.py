"""What ``bpcheck validate`` says: the verdict as text, and the diagnosis as files and a report section.

``diagnosis_section`` turns the smallest failing case into the repro files
(``bpcheck.diagnose.repro``) and the report's extra section: the diagnosis text and the
computation graph (``bpcheck.diagnose.graph``), escaped, for ``write_reports``.
``verdict_text`` is the terminal summary; ``--json`` prints the same dict.
"""
import os
from html import escape
from pathlib import Path

from bpcheck.core.records import printable
from bpcheck.diagnose.diagnose import diagnose
from bpcheck.diagnose.graph import graph_svg
from bpcheck.diagnose.repro import write_repro
from bpcheck.diagnose.search import describe_case
from bpcheck.report.render import md_text


def diagnosis_section(outcome, record, backend, out_dir, *, target=None, exec_command=None, passing=()):
    """(found: JSON-able summary, (title, markdown, html)) for the shrunk failing case."""
    judged = outcome.judged
    if not judged.failures:    # a flaky implementation: it passed (or raised) when asked again
        why = judged.error or "every tensor was within its tolerance"
        note = f"case {record['case']} failed in the run but not when judged again ({why})"
        return ({"from_case": record["case"], "note": note, "diagnosis": None},
                ("Diagnosis", f"{md_text(note)}\n", f"<p>{escape(note)}</p>"))
    case = judged.case
    case.id = f"shrunk-{record['case']}"[:64]
    case.meta = {"shrunk_from": record["case"], "seed": record.get("meta", {}).get("seed"),
                 "target": exec_command or target, "note": outcome.note or "shrunk by Hypothesis"}
    d = diagnose(case, judged.result, judged.truth, judged.rows, judged.findings)
    from bpcheck.diagnose.explain import lines_only_in_failing
    d.explain = lines_only_in_failing(backend, case, list(passing))
    script = write_repro(case, judged.rows, judged.truth, Path(out_dir) / "repro", target=target,
                         exec_argv=getattr(backend, "argv", None) if exec_command else None,
                         cwd=os.getcwd(), finding=d.text())
    found = {"id": case.id, "from_case": record["case"], "case": describe_case(case), "spec": case.spec,
             "batch": case.batch, "shrink_seconds": round(outcome.shrink_seconds, 2),
             "examples_tried": outcome.examples, "note": outcome.note, "diagnosis": d.text(),
             "hints": d.hints, "look_at": d.look_at, "explain": d.explain, "repro": str(script),
             "case_file": str(script.with_name(f"{case.id}.json"))}
    if d.first is not None:
        found.update(layer=d.first["layer"], tensor=d.first["tensor"], **{"class": d.first["class"]},
                     err_u=d.first["err_u"], tol_u=d.first["tol_u"])
    elif d.findings:
        found.update(finding=d.findings[0]["kind"], **{"class": d.findings[0]["class"]})
    how = (f"shrunk in {outcome.shrink_seconds:.1f} s from case {record['case']}" if not outcome.note
           else f"{outcome.note}; case {record['case']}")
    rerun = f"python {script}"
    markdown = (f"{md_text(f'Smallest failing case ({how}): {describe_case(case)}')}\n\n{md_text(d.text())}\n\n"
                f"Reproduce without bpcheck: {md_text(rerun)}\n")
    html = (f"<p>Smallest failing case ({escape(how)}): <code>{escape(describe_case(case))}</code></p>\n"
            f"{graph_svg(case, judged.rows, d.first, uid='shrunk')}\n"
            f"<pre>{escape(d.text())}</pre>\n<p>Reproduce without bpcheck: <code>{escape(rerun)}</code></p>")
    return found, ("Diagnosis: the smallest failing case", markdown, html)


def verdict_text(verdict):
    """The verdict as lines for a terminal."""
    head = f"bpcheck validate {verdict['target']}"
    if "error" in verdict:
        return f"{head}\n  error: {verdict['error']}\nverdict: ERROR (exit 2)"
    o, support = verdict["options"], verdict.get("support", {})
    families = ", ".join(f"{k} {v}" for k, v in sorted(verdict.get("families", {}).items(), key=lambda kv: -kv[1]))
    edge = sum(v for k, v in verdict.get("families", {}).items() if k != "plain")
    lines = [head,
             f"  {verdict['cases']} cases (seed {o['seed']}, {verdict.get('per_cell', o['examples'])} per supported "
             f"loss × activation × dtype cell, {support.get('cells', '?')} cells, depth ≤ {o['max_depth']}, "
             f"the edge grid on top): {verdict['checked']} checked, {verdict['skipped']} "
             f"skipped (unsupported), {len(verdict['errors'])} errors",
             f"  families checked: {families or 'none'}"]
    if verdict.get("coverage"):
        grid = verdict["coverage"]
        lines.append(f"  edge grid met ({edge} edge cases checked): "
                     + "; ".join(f"{name} {g['met']}/{g['of']}" for name, g in grid.items()))
        missing = [m for g in grid.values() for m in g["missing"]]
        if missing:
            lines.append(f"  edge grid NOT met (declined or failed to run): {', '.join(missing[:8])}"
                         + (" ..." if len(missing) > 8 else ""))
    if support.get("declined"):
        lines.append("  not supported by the implementation (left out of the draw): "
                     + ", ".join(sorted(support["declined"])))
        lines.append(f"  checked subset: activations {', '.join(support['activations']) or 'none'}; losses "
                     f"{', '.join(support['losses']) or 'none'}; dtypes {', '.join(support['dtypes']) or 'none'}")
    classes = verdict["classes"]
    if verdict["failed"]:
        real = ", ".join(f"{c} {classes[c]}" for c in ("bug", "precision") if classes.get(c))
        lines.append(f"  FAIL: {verdict['failed']} cases with a real discrepancy ({real})")
    notes = [f"{c} {n}" for c, n in classes.items() if c not in ("bug", "precision")]
    if notes:
        lines.append(f"  notes, not failures{' (--strict: failures)' if o.get('strict') else ''}: "
                     f"{', '.join(notes)} (see the report)")
    if verdict.get("oracle_findings"):
        lines.append(f"  framework oracle findings: {verdict['oracle_findings']} rows (see the report)")
    if verdict["unsupported"]:
        lines.append("  skipped (declined; never counted as failures):")
        lines += [f"    {n} × {m}" for m, n in sorted(verdict["unsupported"].items(), key=lambda kv: -kv[1])]
    if verdict["errors"]:
        lines.append("  errors (the implementation raised, crashed, hung or replied with garbage):")
        lines += [f"    {e['case']}: {e['message']}" for e in verdict["errors"][:5]]
        if len(verdict["errors"]) > 5:
            lines.append(f"    ... and {len(verdict['errors']) - 5} more (report.json)")
    if verdict.get("too_few"):
        lines.append(f"  too little checked: {verdict['checked']} cases, a PASS needs {o['min_cases']} "
                     "(--min-cases)")
    if verdict.get("interrupted"):
        lines.append("  interrupted: the report holds the cases judged so far; --resume continues the run")
    found = verdict.get("shrunk")
    if found and not found["diagnosis"]:
        lines += ["", f"Diagnosis: {found['note']}"]
    elif found:
        how = f"shrunk in {found['shrink_seconds']:.1f} s" if not found["note"] else found["note"]
        lines += ["", f"Smallest failing case ({how}, from {found['from_case']}):", f"  {found['case']}",
                  found["diagnosis"], "", f"Reproduce: python {found['repro']}",
                  f"  (case: {found['case_file']} + .npz; needs only numpy and the target)"]
    if verdict.get("reports"):
        lines.append(f"Report: {verdict['reports']['index.html']} (also report.md, report.json)")
    if verdict.get("timing"):
        t = verdict["timing"]
        lines.append(f"Time: {t['run_seconds']:.1f} s for the cases ({t['cases_per_second']:.0f} cases/s), "
                     f"{t['diagnose_seconds']:.1f} s to shrink and diagnose")
    word = {0: "PASS", 1: "FAIL", 2: "ERROR", 130: "INTERRUPTED"}[verdict["exit_code"]]
    lines.append(f"verdict: {word} (exit {verdict['exit_code']})")
    return printable("\n".join(lines))
