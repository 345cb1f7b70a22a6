"""``bpcheck op``: check one layer's backward pass -- a CS231n-style module, a PyTorch or a JAX function.

    bpcheck op layernorm --layers layers.py            # CS231n's layernorm_forward / layernorm_backward
    bpcheck op all --layers layers.py                  # every op the module defines
    bpcheck op rmsnorm --torch mynorm.py:rms_norm      # fn(x, gamma, eps=...) on tensors
    bpcheck op rmsnorm --jax mynorm.py:rms_norm        # the same on JAX arrays
    bpcheck op layernorm --exec "node layers.js"       # any language: the bpcheck-op/1 line protocol
    bpcheck op --list                                  # the catalog

Exit 0 pass, 1 a wrong output or gradient, 2 bad input (an unknown op, a file that does not import) or
nothing judged (every case declined).
On a failure the shrunk case is saved (``--save-case``, default ``bpcheck-op-<op>``: .json + .npz) with
a repro script beside it (``.py``) that re-judges it with one command.
"""
import json
import sys
from pathlib import Path

import click

from bpcheck import ops
from bpcheck.opcheck import candidates as cand
from bpcheck.ops.cases import load, schema_document
from bpcheck.opcheck.check import as_candidate, check_op, diagnosis, judge_case
from bpcheck.opcheck.protocol import program
from bpcheck.run.backends import load_function

__all__ = ["op_command", "candidate_from"]

REPRO = '''"""Re-judge the saved failing case of {op} (written by bpcheck op). Run: python {script}"""
import sys
from pathlib import Path

from bpcheck import ops
from bpcheck.ops.cases import load, schema_document
from bpcheck.opcheck.check import diagnosis, judge_case
from bpcheck.opcheck.cli import candidate_from

here = Path(__file__).resolve().parent
case = load(here / {case!r})
candidate = candidate_from({way!r}, {target!r}, extended={extended!r})
rows, cls = judge_case(ops.get(case.op), candidate, case)
for r in rows:
    print(f"{{r['tensor']:8}} {{r['status']:5}} {{r.get('err_u', float('nan')):10.3g}} u  (tolerance "
          f"{{r.get('tol_u', float('nan')):.3g}} u) {{r['message']}}")
print(diagnosis({{"case": case, "rows": rows}}) if cls == "bug" else "passes: " + cls)
sys.exit(1 if cls == "bug" else 0)
'''


def candidate_from(way, target, *, extended=False, timeout=10.0):
    """The Candidate a repro script names: way "layers", "torch", "jax" or "exec" and its target."""
    return _build(*(target if way == w else None for w in ("layers", "torch", "jax", "exec")), extended, timeout)


def _way(layers, torch_target, jax_target, exec_command=None):
    if exec_command:
        return "exec", exec_command
    if layers:
        return "layers", str(Path(layers).resolve()) if layers.endswith(".py") else layers
    if torch_target:
        return "torch", torch_target
    return "jax", jax_target


def _build(layers, torch_target, jax_target, exec_command, extended, timeout):
    if sum(bool(x) for x in (layers, torch_target, jax_target, exec_command)) != 1:
        raise click.UsageError("give exactly one of --layers, --torch, --jax or --exec")
    try:
        if exec_command:
            return program(exec_command, timeout=timeout)
        if layers:
            return as_candidate(layers=cand.load_module(layers), name=layers, extended=extended)
        fn = load_function(torch_target or jax_target)
        return as_candidate(torch=fn, name=torch_target) if torch_target else as_candidate(jax=fn, name=jax_target)
    except (ValueError, ImportError) as exc:
        raise click.BadParameter(str(exc)) from None


def _ops_in(candidate_module_path):
    module = cand.load_module(candidate_module_path)
    return [name for name, op in ops.REGISTRY.items() if op.cs231n and hasattr(module, op.cs231n[0])]


def _report_json(report):
    first = None
    if report.first:
        first = {"case": report.first["case"].describe(),
                 "rows": [{k: v for k, v in r.items() if k != "entries"} | {"entries": r.get("entries", [])}
                          for r in report.first["rows"]]}
    return {"op": report.op, "candidate": report.candidate, "verdict": report.verdict, "cases": report.cases,
            "failures": report.failures, "notes": report.notes, "seconds": report.seconds,
            "coverage": [{"family": f, "dtype": d, "cases": n} for (f, d), n in report.coverage.items()],
            "first": first}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("op_name", required=False)
@click.option("--layers", metavar="FILE.py|MODULE", help="A CS231n-style layers module (docs/layers_contract.md).")
@click.option("--extended", is_flag=True, help="The module takes the contract's extensions (pairs, dilation).")
@click.option("--torch", "torch_target", metavar="FILE.py:FN", help="fn(*inputs, *constants, **hyper) on tensors.")
@click.option("--jax", "jax_target", metavar="FILE.py:FN", help="The same on JAX arrays.")
@click.option("--exec", "exec_command", metavar="COMMAND", help="A program speaking bpcheck-op/1 (any language).")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds per case for --exec.")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float32", "float64"]),
              help="Repeatable; both by default.")
@click.option("--per-family", default=4, show_default=True, type=click.IntRange(min=1),
              help="Cases per (edge family, dtype); every family is drawn on every run.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--case", "case_path", type=click.Path(dir_okay=False), help="Judge one saved case instead.")
@click.option("--save-case", metavar="PATH", help="Where the shrunk failing case goes (no suffix).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON too.")
@click.option("--list", "list_ops", is_flag=True, help="List the catalog and exit.")
@click.option("--schema", "print_schema", is_flag=True,
              help="Print the op case JSON Schema (its enums from the catalog) and exit.")
def op_command(op_name, layers, extended, torch_target, jax_target, exec_command, timeout, dtypes, per_family, seed, case_path,
               save_case, json_path, list_ops, print_schema):
    """Check OP_NAME's forward and backward (or `all` the ops a --layers module defines)."""
    if print_schema:
        click.echo(json.dumps(schema_document(ops.REGISTRY), indent=2))
        return
    if list_ops:
        for name, op in ops.REGISTRY.items():
            click.echo(f"{name:18} {op.definition}")
            click.echo(f"{'':18} families: {', '.join(op.families)}")
        return
    if not op_name:
        raise click.UsageError("name an op (bpcheck op --list shows them) or `all` with --layers")
    names = [op_name]
    if op_name == "all":
        if not layers:
            raise click.UsageError("`all` needs --layers")
        try:
            names = _ops_in(layers)
        except (ValueError, ImportError, OSError) as exc:
            raise click.BadParameter(str(exc)) from None
        if not names:
            raise click.UsageError(f"{layers} defines none of the catalog's CS231n-style forwards")
    for name in names:
        if name not in ops.REGISTRY:
            raise click.BadParameter(f"unknown op {name!r}; known: {', '.join(ops.names())}")
    who = _build(layers, torch_target, jax_target, exec_command, extended, timeout)
    if case_path:
        try:
            case = load(case_path)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        try:
            rows, cls = judge_case(ops.get(case.op), who, case)
        except cand.CandidateFatal as exc:
            click.echo(f"bpcheck op: {exc}", err=True)
            sys.exit(2)
        finally:
            who.close()
        click.echo(diagnosis({"case": case, "rows": rows}) if cls == "bug" else f"{case.describe()}: {cls}")
        sys.exit(1 if cls == "bug" else 0)
    reports, code = [], 0
    for name in names:
        target = save_case or f"bpcheck-op-{name}"
        report = check_op(name, candidate=who, dtypes=dtypes or ("float32", "float64"), per_family=per_family,
                          seed=seed, save_to=target)
        reports.append(report)
        click.echo(report.summary())
        if report.verdict == "error":
            click.echo(f"bpcheck op {name}: {report.error}", err=True)
            code = 2
            break
        if report.verdict == "none":
            click.echo(f"bpcheck op {name}: nothing was judged: every case was declined", err=True)
            code = max(code, 2)
        if report.verdict == "fail":
            code = 1 if code != 2 else code
            way, value = _way(layers, torch_target, jax_target, exec_command)
            script = Path(target).with_suffix(".py")
            script.write_text(REPRO.format(op=name, script=script.name, case=Path(target).name, way=way,
                                           target=value, extended=extended))
            click.echo(f"saved: {target}.json, {target}.npz; reproduce: python {script}")
    who.close()
    if json_path:
        Path(json_path).write_text(json.dumps([_report_json(r) for r in reports], indent=2, default=str) + "\n")
    sys.exit(code)
