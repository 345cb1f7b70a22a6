"""``bpcheck train ARCH --optimizer NAME --step FILE.py:FN``: K training steps judged one by one.

Exit 0: every step right; 1: a wrong step (the first one named, with its tensor and hints); 2: bad input,
nothing judged (every run declined, or stopped where the update rule itself is not finite), or a program
that cannot run; 3: an internal error of bpcheck's own (never a verdict).
"""
import json
import sys
import traceback
from pathlib import Path

import click

from bpcheck.opcheck.candidates import CandidateFatal, load_module
from bpcheck.opcheck.graph_cli import function_option
from bpcheck.train.check import check_training
from bpcheck.train.envelope import envelope
from bpcheck.train.optimizers import OPTIMIZERS
from bpcheck.train.protocol import step_program
from bpcheck.train.running import check_running, cs231n_running
from bpcheck.train.teacher import TRAINABLE, draw_train_case

__all__ = ["train_command"]


def _running(target, convention, steps, dtypes, seed):
    """Judge running statistics for each dtype, 1-d and spatial; print a line per run; the exit code."""
    layers = target.endswith(".py") and ":" not in target
    fn = (cs231n_running(function_option(target, "--running", load_module)) if layers
          else function_option(target, "--running"))
    failed = False
    for dtype in dtypes:
        for spatial in (False, True):
            r = check_running(fn, convention, steps=steps, dtype=dtype, seed=seed, spatial=spatial)
            where = f"{dtype} {'(N, C, H, W)' if spatial else '(N, C)'}"
            click.echo(f"running statistics ({convention}) {where}: {r['verdict'].upper()}")
            if r["first"]:
                failed = True
                f = r["first"]
                click.echo(f"  first wrong step {f['step']}, x {f['shape']}: "
                           + "; ".join(f"{row['tensor']} {row.get('message') or 'wrong'}" for row in f["rows"]
                                       if row["status"] == "bug"))
                for hint in f["hints"]:
                    click.echo(f"  hint: {hint}")
    return 1 if failed else 0


def _hyper(pairs, optimizer):
    known = OPTIMIZERS[optimizer].hyper
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE with NAME one of {', '.join(known)}",
                                     param_hint="--hyper")
        try:
            out[key] = float(json.loads(value))
        except (ValueError, TypeError):
            raise click.BadParameter(f"{pair!r}: {value!r} is not a number", param_hint="--hyper") from None
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("arch_name", required=False, type=click.Choice(TRAINABLE))
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), help="The update rule your step implements.")
@click.option("--step", "target", metavar="FILE.py:FN", help="step(params, grads, state, hyper) -> (params, state).")
@click.option("--exec", "exec_command", metavar="COMMAND",
              help="A program in any language serving the optimizer over bpcheck-op/1 (docs/protocol.md).")
@click.option("--hyper", "pairs", multiple=True, metavar="NAME=VALUE", help="A hyper-parameter (repeatable).")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(1, 500), help="K, per run.")
@click.option("--cases", default=2, show_default=True, type=click.IntRange(min=1), help="Runs per dtype.")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float32", "float64"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write a page with the free-running loss curves and their envelope.")
@click.option("--running", "running", metavar="LAYERS.py|FILE.py:FN",
              help="Check batch norm's running statistics instead: a CS231n-style layers module (its "
                   "batchnorm_forward's bn_param) or fn(x, running_mean, running_var, momentum).")
@click.option("--convention", type=click.Choice(["torch", "cs231n"]), default="cs231n", show_default=True,
              help="With --running: whose running-statistics formula (and meaning of momentum) you follow.")
@click.option("--list", "list_all", is_flag=True, help="List the optimizers and exit.")
def train_command(arch_name, optimizer, target, exec_command, pairs, steps, cases, dtypes, seed, html_path, running, convention,
                  list_all):
    """Train ARCH for K steps with your STEP function and judge every step at your own parameters
    (teacher forcing): the first wrong step, its tensor and why. --html adds the free-running picture."""
    if list_all:
        for name, o in OPTIMIZERS.items():
            click.echo(f"{name:10s} {o.definition}; defaults {o.hyper}")
        return
    if running:
        sys.exit(_running(running, convention, steps, tuple(dtypes) or ("float32", "float64"), seed))
    if not (arch_name and optimizer and bool(target) != bool(exec_command)):
        raise click.UsageError("give ARCH, --optimizer and one of --step or --exec (bpcheck train --list for the "
                               "optimizers)")
    close = None
    if exec_command:
        try:
            fn, close = step_program(exec_command, optimizer)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--exec") from None
    else:
        fn = function_option(target, "--step")
    hyper = _hyper(pairs, optimizer)
    dtypes = tuple(dtypes) or ("float32", "float64")
    try:
        report = check_training(arch_name, optimizer, fn, name=target or exec_command, hyper=hyper, steps=steps,
                                cases=cases, dtypes=dtypes, seed=seed)
        click.echo(report.summary())
        if html_path:
            from bpcheck.report.training import training_page
            curves = {dt: envelope(draw_train_case(arch_name, optimizer, dt, seed * 1000, steps=steps, hyper=hyper),
                                   fn) for dt in dtypes}
            Path(html_path).write_text(training_page(report, curves))
            click.echo(f"wrote {html_path}")
    except CandidateFatal as exc:
        click.echo(f"bpcheck train: stopped -- {exc}", err=True)
        sys.exit(2)
    except Exception as exc:                  # the candidate's errors are verdicts: this is bpcheck's own
        click.echo(traceback.format_exc(), err=True)
        click.echo(f"bpcheck: internal error -- {type(exc).__name__}: {exc}. This is a bug in bpcheck, not a "
                   "verdict on your code: please report it with the command.", err=True)
        sys.exit(3)
    finally:
        if close is not None:
            close()
    sys.exit({"pass": 0, "fail": 1}.get(report.verdict, 2))
