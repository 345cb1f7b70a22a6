"""``bpcheck merge``: join the shards of a ``bpcheck report --shard I/N`` run into one report.

Each shard directory holds the ``report.json`` and ``cases.jsonl`` its run
wrote. The shards must come from the same run (the same seed and flags but the
shard) and together cover it: every shard 1..N once, every case of the run
exactly once. The merged ``cases.jsonl`` lists the records in the unsharded
run's case order and the reports are written from them, so the tables are
those of the unsharded run (only timings and the environment differ).
"""
import json
import sys
import time
from pathlib import Path

import click

from bpcheck.core.records import CASES_FILE, dumps, load_records

RUN_FLAGS = ("seed", "examples", "losses", "activations", "dtypes", "max_depth", "edge_share", "candidate")


class MergeError(ValueError):
    """The shards do not make up one run."""


def _read_shard(directory):
    directory = Path(directory)
    try:
        report = json.loads((directory / "report.json").read_text())
        flags = report["meta"]["flags"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MergeError(f"{directory}: no readable report.json of a bpcheck report run ({exc})") from None
    if not flags.get("shard"):
        raise MergeError(f"{directory}: not a shard (run with --shard I/N)")
    return flags, load_records(directory / CASES_FILE)


def merge_shards(directories):
    """(flags of the whole run, records in the run's case order). Raises MergeError."""
    from bpcheck.cases.generate import generate_cases
    shards = [_read_shard(d) for d in directories]
    first = shards[0][0]
    for (flags, _), directory in zip(shards, directories):
        differ = [k for k in RUN_FLAGS if flags.get(k) != first.get(k)]
        if differ:
            raise MergeError(f"{directory}: not a shard of the same run ({', '.join(differ)} differ)")
    n = first["shard"][1]
    seen = sorted(flags["shard"][0] for flags, _ in shards)
    if any(flags["shard"][1] != n for flags, _ in shards) or seen != list(range(1, n + 1)):
        raise MergeError(f"need shards 1..{n} once each, got {', '.join(f'{i}/{n}' for i in seen)}")
    cases = generate_cases(first["seed"], first["examples"], losses=first["losses"],
                           activations=first["activations"], dtypes=first["dtypes"],
                           max_depth=first["max_depth"], edge_share=first["edge_share"])
    records = {}
    for flags, shard_records in shards:
        for record in shard_records:
            if record["case"] in records:
                raise MergeError(f"case {record['case']} is in two shards")
            records[record["case"]] = record
    missing = [c.id for c in cases if c.id not in records]
    if missing:
        raise MergeError(f"{len(missing)} cases of the run are in no shard (the first: {missing[0]}); "
                         "was a shard interrupted? finish it with --resume")
    flags = {**first, "shard": None, "merged_from": [str(d) for d in directories]}
    return flags, [records[c.id] for c in cases]


@click.command("merge", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Where to write the merged cases.jsonl and reports.")
def merge_command(shards, out):
    """Join the output directories of `bpcheck report --shard I/N` runs (all N) into one report in OUT."""
    from bpcheck.report.report import write_reports
    start = time.perf_counter()
    try:
        flags, records = merge_shards(list(shards))
    except MergeError as exc:
        click.echo(f"bpcheck merge: {exc}", err=True)
        sys.exit(2)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / CASES_FILE, "w", encoding="utf-8") as f:
        for record in records:
            f.write(dumps(record) + "\n")
    meta = {"seed": flags["seed"], "flags": flags, "command": " ".join(["bpcheck"] + sys.argv[1:]),
            "interrupted": False, "timing": {"merge_seconds": round(time.perf_counter() - start, 3)}}
    write_reports(records, out, meta=meta)
    click.echo(f"merged {len(shards)} shards, {len(records)} cases -> {out}/")
