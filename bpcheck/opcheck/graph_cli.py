"""``bpcheck graph ARCH --fn FILE.py:FN``: check a whole network's hand-written backward pass.

Exit 0: pass; 1: a wrong gradient (the diagnosis names the first wrong node); 2: bad input (an unknown
architecture, a file that does not import, a missing function), nothing judged, or a program that cannot
run; 3: an internal error of bpcheck's own (a traceback and a plea to report it: never a verdict). ``--html PATH`` also writes a standalone
page: the verdict, the diagnosis, the network's graph coloured by its errors and every row of the case.
"""
import json
import sys
import traceback
from pathlib import Path

import click

from bpcheck import ops
from bpcheck.ops import architectures
from bpcheck.ops.graph import schema_document
from bpcheck.opcheck.candidates import CandidateFatal, load_function
from bpcheck.opcheck.graph_candidates import framework_candidate, program_candidate, python_candidate
from bpcheck.opcheck.graph_check import check_graph
from bpcheck.opcheck.graph_vectors import export

__all__ = ["graph_command", "function_option"]


def function_option(target, option, load=load_function):
    """``load(target)`` (a FILE.py:FN function by default), its ValueError turned into click's bad-parameter
    error for ``option`` (exit 2)."""
    try:
        return load(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("arch_name", required=False)
@click.option("--fn", "target", metavar="FILE.py:FN",
              help="fn(values, constants, hyper, dout) -> (out, grads[, deltas]) (the graph contract).")
@click.option("--exec", "exec_command", metavar="COMMAND",
              help="A program in any language speaking bpcheck-op/1 with graph requests (docs/protocol.md).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a program may take per reply (--exec).")
@click.option("--framework", type=click.Choice(["torch", "jax"]),
              help="Check the framework's own built-ins composed over the graph instead (an oracle).")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float32", "float64"]),
              help="Dtypes to check (default both).")
@click.option("--per-family", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--list", "list_archs", is_flag=True, help="List the architectures and exit.")
@click.option("--show", is_flag=True, help="Print the architecture's graph (JSON, smallest size) and exit.")
@click.option("--schema", "print_schema", is_flag=True, help="Print the graph JSON Schema and exit.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the graph golden vectors (every architecture x dtype x family, with truth and "
                   "tolerances, plain JSON) into DIR and exit.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write a standalone page: the verdict, the diagnosis, the graph coloured by each node's "
                   "error (the smallest failing case, or one plain case when it passes) and every row.")
def graph_command(arch_name, target, exec_command, timeout, framework, dtypes, per_family, seed, list_archs, show,
                  print_schema, export_dir, html_path):
    """Check the backward pass of a whole network ARCH: every input and parameter gradient (and every
    node's delta, if returned) against the certified truth of its graph, in every family and dtype;
    a failure is shrunk to the smallest size and its first wrong node named."""
    if export_dir:
        names = export(export_dir)
        click.echo(f"wrote {len(names)} graph vectors and manifest.json to {export_dir}")
        return
    if print_schema:
        click.echo(json.dumps(schema_document(ops.REGISTRY), indent=2))
        return
    if list_archs:
        for name, arch in architectures.ARCHITECTURES.items():
            click.echo(f"{name:16s} {arch.description}")
        return
    if not arch_name:
        raise click.UsageError("name an architecture (bpcheck graph --list)")
    try:
        arch = architectures.get(arch_name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ARCH") from None
    if show:
        click.echo(json.dumps(arch.graph(arch.sizes[0]).to_json(), indent=1))
        return
    if sum(map(bool, (target, exec_command, framework))) != 1:
        raise click.UsageError("give one of --fn FILE.py:FN, --exec COMMAND or --framework torch|jax")
    if exec_command:
        try:
            candidate = program_candidate(exec_command, timeout=timeout)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--exec") from None
    else:
        candidate = (framework_candidate(framework) if framework
                     else python_candidate(function_option(target, "--fn"), target))
    dtypes = tuple(dtypes) or ("float32", "float64")
    try:
        report = check_graph(arch, candidate, name=target, seed=seed, per_family=per_family, dtypes=dtypes)
    except CandidateFatal as exc:
        click.echo(f"bpcheck graph {arch.name}: stopped -- {exc}", err=True)
        candidate.close()
        sys.exit(2)
    except Exception as exc:                  # the candidate's errors are verdicts: this is bpcheck's own
        candidate.close()
        click.echo(traceback.format_exc(), err=True)
        click.echo(f"bpcheck: internal error -- {type(exc).__name__}: {exc}. This is a bug in bpcheck, not a "
                   "verdict on your code: please report it with the command.", err=True)
        sys.exit(3)
    click.echo(report.summary())
    if html_path:
        from bpcheck.opcheck.graph_report import plain_judgement, validate_page
        if report.first is not None:
            shown = (report.first["case"], report.first["rows"], report.first["culprit"])
        else:
            shown = plain_judgement(arch, candidate, dtypes[0], seed)
        Path(html_path).write_text(validate_page(report, *shown))
        click.echo(f"wrote {html_path}")
    candidate.close()
    sys.exit({"pass": 0, "fail": 1}.get(report.verdict, 2))
