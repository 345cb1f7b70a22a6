"""Options shared by the commands that draw and run dense cases (``bpcheck report``, ``validate``,
``selftest``): a comma-separated subset of names, a shard I/N of the run, the default number of jobs."""
import os

import click

__all__ = ["choices", "parse_shard", "shard_of", "default_jobs"]


def choices(known):
    """A click callback: a comma-separated subset of ``known`` (or "all") as a list; BadParameter names
    what is unknown."""
    def parse(ctx, param, value):
        if value in (None, "", "all"):
            return list(known)
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in known]
        if unknown:
            raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from {', '.join(known)} or 'all'")
        return items
    return parse


def parse_shard(value):
    """``"I/N"`` -> (I, N) with 1 <= I <= N; None -> None. Raises click.BadParameter."""
    if value is None:
        return None
    try:
        i, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not I/N (e.g. 2/4)") from None
    if not 1 <= i <= n:
        raise click.BadParameter(f"{value!r}: need 1 <= I <= N")
    return i, n


def shard_of(cases, shard):
    """Shard I of N: every N-th case from the I-th (deterministic; the shards partition the run)."""
    return cases if shard is None else cases[shard[0] - 1::shard[1]]


def default_jobs():
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:
        return max(1, min(os.cpu_count() or 1, 8))
