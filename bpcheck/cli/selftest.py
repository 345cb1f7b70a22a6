"""``bpcheck selftest``: prove the checker on the bug zoo, in the open.

The zoo (``tests/meta/zoo`` of a bpcheck checkout) holds implementations of the
Python contract, each with one realistic bug, and correct ones written
differently; each says in ``EXPECTED`` what bpcheck should conclude (verdict,
class, first wrong tensor). ``selftest`` runs ``bpcheck validate`` on every
member with default options and prints, per member: caught or passed as
expected, the class and the first wrong tensor of the diagnosis against the
expected ones, seconds to the first failing case, the shrunk case's size; then
the catch rate. ``--false-alarms N`` runs the false-alarm campaign instead
(``bpcheck.proof.campaign``), ``--op-false-alarms N`` the op catalog's (``bpcheck.opcheck.campaign``),
``--graph-false-alarms N`` the whole networks' (``bpcheck.opcheck.graph_campaign``). Results are written as JSON and Markdown into ``--out``.
"""
import json
import os
import sys
import time
from pathlib import Path

import click

from bpcheck.proof.zoo import ZOO, members


def run_member(name, path, expected, out_dir, *, jobs=1, seed=None, shrink_budget=60.0):
    """Validate one member with default options; a row for the table."""
    from bpcheck.cli.validate import run_validate
    from bpcheck.report.report import DEFAULT_SEED
    start = time.perf_counter()
    target = f"{os.path.relpath(path)}:backprop"        # relative: reports name no machine's paths
    verdict = run_validate(target, out_dir=Path(out_dir) / name, progress=False, jobs=jobs,
                           seed=DEFAULT_SEED if seed is None else seed, shrink_budget=shrink_budget)
    found = verdict.get("shrunk") or {}
    code = verdict["exit_code"]
    row = {"member": name, "expected": expected["verdict"], "expected_class": expected.get("class"),
           "expected_tensor": expected.get("first_wrong"), "exit_code": code,
           "verdict": {0: "pass", 1: "fail"}.get(code, "error"),
           "class": found.get("class") or (_finding_class(verdict) if code == 1 else None),
           "tensor": found.get("tensor") or found.get("finding"),
           "checked": verdict.get("checked"), "cases": verdict.get("cases"),
           "first_failure_seconds": (verdict.get("timing") or {}).get("first_failure_seconds"),
           "shrunk": found.get("case"), "seconds": round(time.perf_counter() - start, 2),
           "error": verdict.get("error") or "; ".join(e["message"][:120] for e in verdict.get("errors", [])[:2])}
    if expected["verdict"] == "pass":
        row["ok"] = code == 0
    else:
        row["caught"] = code in (1, 2) and code == expected.get("exit_code", 1)
        row["right_class"] = row["class"] == expected.get("class")
        row["right_tensor"] = row["tensor"] == expected.get("first_wrong")
        row["ok"] = row["caught"] and row["right_class"] and row["right_tensor"]
    return row


def _finding_class(verdict):
    classes = verdict.get("classes", {})
    return "bug" if classes.get("bug") else ("precision" if classes.get("precision") else None)


def summary(rows):
    bugs = [r for r in rows if r["expected"] == "fail"]
    correct = [r for r in rows if r["expected"] == "pass"]
    return {"mutants": len(bugs), "caught": sum(r["caught"] for r in bugs),
            "right_class": sum(r["caught"] and r["right_class"] for r in bugs),
            "right_tensor": sum(r["caught"] and r["right_tensor"] for r in bugs),
            "correct": len(correct), "passed": sum(r["ok"] for r in correct),
            "median_first_failure_seconds": _median([r["first_failure_seconds"] for r in bugs
                                                     if r["first_failure_seconds"] is not None]),
            "median_seconds": _median([r["seconds"] for r in bugs])}


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def table_lines(rows, s):
    lines = ["| member | expected | verdict | class (expected) | first wrong (expected) | first failure s | "
             "shrunk to | ok |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        exp_cls = f"{r['class'] or '—'} ({r['expected_class'] or '—'})"
        exp_t = f"{r['tensor'] or '—'} ({r['expected_tensor'] or '—'})"
        ff = "—" if r["first_failure_seconds"] is None else f"{r['first_failure_seconds']:.2f}"
        lines.append(f"| {r['member']} | {r['expected']} | {r['verdict']} | {exp_cls} | {exp_t} | {ff} | "
                     f"{r['shrunk'] or '—'} | {'yes' if r['ok'] else '**no**'} |")
    lines += ["", f"Caught {s['caught']} of {s['mutants']} mutants ({s['right_class']} with the right class, "
                  f"{s['right_tensor']} naming the right first wrong tensor); {s['passed']} of {s['correct']} "
                  f"correct implementations passed. Median time to the first failing case "
                  f"{s['median_first_failure_seconds']} s; median whole run per mutant {s['median_seconds']} s."]
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--zoo", type=click.Path(file_okay=False, path_type=Path), default=ZOO, show_default="tests/meta/zoo",
              help="Directory of zoo members (bug_*.py, ok_*.py with EXPECTED).")
@click.option("--members", "only", default=None, help="Comma-separated member names (default: all).")
@click.option("--jobs", "-j", default=None, type=click.IntRange(1), help="Worker processes per validate run.")
@click.option("--false-alarms", type=click.IntRange(0), default=0,
              help="Run the false-alarm campaign on N cases instead (bpcheck.proof.campaign).")
@click.option("--ops", "op_zoo", is_flag=True,
              help="Run the op zoo instead (bpcheck.opcheck.selftest: every slip on ten seeds, both correct layers).")
@click.option("--op-false-alarms", type=click.IntRange(0), default=0, metavar="N",
              help="Run the op false-alarm campaign on about N op cases instead (bpcheck.opcheck.campaign).")
@click.option("--graph-false-alarms", type=click.IntRange(0), default=0, metavar="N",
              help="Run the graph false-alarm campaign on N whole-network cases instead (bpcheck.opcheck.graph_campaign).")
@click.option("--baselines", type=click.IntRange(0), default=0, metavar="N",
              help="Run bpcheck, gradcheck and check_grads on the same float64 cases (N plain per loss x "
                   "activation cell, edge cases on top) for every member instead.")
@click.option("--resume", is_flag=True, help="Continue an interrupted false-alarm campaign.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True)
@click.option("--seed", type=int, default=None, help="Case generator seed (default: bpcheck's).")
def selftest_command(zoo, only, jobs, false_alarms, op_zoo, op_false_alarms, graph_false_alarms, baselines, resume,
                     out, seed):
    """Run bpcheck validate on every bug-zoo member: catch rate, classes, first wrong tensors."""
    from bpcheck.cli.options import default_jobs
    jobs = jobs or default_jobs()
    if baselines:
        from bpcheck.proof.baselines import compare_on_zoo, markdown
        click.echo(markdown(compare_on_zoo(baselines, zoo=zoo, seed=seed, out=out, jobs=jobs)))
        return
    if op_zoo:
        from bpcheck.opcheck.selftest import run as op_selftest
        result = op_selftest(out)
        click.echo(f"op zoo: {result['caught_every_seed']} of {result['members']} caught on every one of "
                   f"{result['seeds']} seeds, {result['right_tensor_every_seed']} at the expected tensor; "
                   f"correct layers {result['correct_pass_every_seed']} of {result['correct_pairs']} pass; "
                   f"wrote {out}/ops_selftest.md, .json")
        sys.exit(0 if result["caught_every_seed"] == result["members"]
                 and result["correct_pass_every_seed"] == result["correct_pairs"] else 1)
    if op_false_alarms:
        from bpcheck.opcheck.campaign import run as op_campaign
        result = op_campaign(op_false_alarms, out=Path(out), jobs=jobs, echo=lambda m: click.echo(m, err=True))
        click.echo(f"{result['cases']} op cases, {result['alarms']} false alarms in {result['seconds']} s; "
                   f"wrote {out}/ops_false_alarms.md, .json, .jsonl")
        sys.exit(1 if result["alarms"] else 0)
    if graph_false_alarms:
        from bpcheck.opcheck.graph_campaign import run as graph_campaign
        result = graph_campaign(graph_false_alarms, out=Path(out), jobs=jobs, resume=resume,
                                echo=lambda m: click.echo(m, err=True))
        click.echo(f"{result['cases']} graph cases ({result['judgements']} judgements), {result['alarms']} false "
                   f"alarms in {result['seconds']} s; wrote {out}/graph_false_alarms.md, .json, .jsonl")
        sys.exit(1 if result["alarms"] else 0)
    if false_alarms:
        from bpcheck.proof.campaign import campaign_command_body
        sys.exit(campaign_command_body(false_alarms, zoo=zoo, jobs=jobs, out=out, seed=seed, resume=resume))
    try:
        found = members(zoo)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if only:
        wanted = {m.strip() for m in only.split(",")}
        found = [m for m in found if m[0] in wanted]
    rows = []
    for name, path, expected in found:
        row = run_member(name, path, expected, out / "selftest", jobs=jobs, seed=seed)
        rows.append(row)
        mark = "ok" if row["ok"] else "MISMATCH"
        click.echo(f"{name:32} expected {row['expected']:4} got {row['verdict']:5} class {row['class'] or '-':9} "
                   f"tensor {row['tensor'] or '-':10} first failure {row['first_failure_seconds'] or '-'} s  {mark}")
    s = summary(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selftest.json").write_text(json.dumps({"summary": s, "members": rows}, indent=1) + "\n")
    (out / "selftest.md").write_text("\n".join(["# bpcheck selftest: the bug zoo", "",
                                                "`bpcheck selftest` runs `bpcheck validate` (default options) on "
                                                "every member of tests/meta/zoo.", ""] + table_lines(rows, s)) + "\n")
    click.echo(table_lines(rows, s)[-1])
    sys.exit(0 if all(r["ok"] for r in rows) else 1)
