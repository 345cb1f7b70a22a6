"""``bpcheck train ARCH --optimizer NAME --step FILE.py:FN``: K training steps judged one by one.

Exit 0: every step right; 1: a wrong step (the first one named, with its tensor and hints); 2: bad input.
"""
import json
import sys
from pathlib import Path

import click

from bpcheck.ops.candidates import load_function
from bpcheck.train.check import check_training
from bpcheck.train.envelope import envelope
from bpcheck.train.optimizers import OPTIMIZERS
from bpcheck.train.teacher import TRAINABLE, draw_train_case

__all__ = ["train_command"]


def _step_function(target):
    try:
        return load_function(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--step") from None


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
@click.option("--hyper", "pairs", multiple=True, metavar="NAME=VALUE", help="A hyper-parameter (repeatable).")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(1, 500), help="K, per run.")
@click.option("--cases", default=2, show_default=True, type=click.IntRange(min=1), help="Runs per dtype.")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float32", "float64"]))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--html", "html_path", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write a page with the free-running loss curves and their envelope.")
@click.option("--list", "list_all", is_flag=True, help="List the optimizers and exit.")
def train_command(arch_name, optimizer, target, pairs, steps, cases, dtypes, seed, html_path, list_all):
    """Train ARCH for K steps with your STEP function and judge every step at your own parameters
    (teacher forcing): the first wrong step, its tensor and why. --html adds the free-running picture."""
    if list_all:
        for name, o in OPTIMIZERS.items():
            click.echo(f"{name:10s} {o.definition}; defaults {o.hyper}")
        return
    if not (arch_name and optimizer and target):
        raise click.UsageError("give ARCH, --optimizer and --step (bpcheck train --list for the optimizers)")
    fn = _step_function(target)
    hyper = _hyper(pairs, optimizer)
    dtypes = tuple(dtypes) or ("float32", "float64")
    report = check_training(arch_name, optimizer, fn, name=target, hyper=hyper, steps=steps, cases=cases,
                            dtypes=dtypes, seed=seed)
    click.echo(report.summary())
    if html_path:
        from bpcheck.report.training import training_page
        curves = {dt: envelope(draw_train_case(arch_name, optimizer, dt, seed * 1000, steps=steps, hyper=hyper), fn)
                  for dt in dtypes}
        Path(html_path).write_text(training_page(report, curves))
        click.echo(f"wrote {html_path}")
    sys.exit({"pass": 0, "fail": 1}.get(report.verdict, 2))
