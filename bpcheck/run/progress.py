"""Progress of a run on stderr: a rich bar on a terminal, a plain line every 10 s otherwise."""
import math
import sys
import time


class Progress:
    """A rich progress bar (cases, cases/s, time left) on a terminal; plain lines otherwise."""

    def __init__(self, total, done=0, enabled=True, stream=None):
        self.total, self.done, self.new = total, done, 0
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.bar = None
        self.enabled = enabled and total > done
        if self.enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.bar = Bar(TextColumn("[bold]cases"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[issues]}"),
                           TimeElapsedColumn(), TextColumn("elapsed,"), TimeRemainingColumn(),
                           TextColumn("left"),
                           console=Console(file=self.stream), transient=False)
            self.task = self.bar.add_task("cases", total=total, completed=done, rate="", issues="")
            self.bar.start()
        self.failing = self.noted = 0

    def advance(self, record):
        self.done += 1
        self.new += 1
        classes = {r.get("class") for r in record.get("rows", []) + record.get("findings", [])}
        if record.get("status") == "error" or classes & {"bug", "precision"}:
            self.failing += 1
        elif classes - {"pass"}:
            self.noted += 1
        if not self.enabled:
            return
        now = time.monotonic()
        rate = self.new / max(now - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=f"{rate:.2f} cases/s",
                            issues=self._issues())
        elif now - self.last >= 10 or self.done == self.total:
            self.last = now
            left = (self.total - self.done) / rate if rate > 0 else math.inf
            print(f"bpcheck: {self.done}/{self.total} cases, {rate:.2f} cases/s, "
                  f"{self._issues()}, ~{_duration(left)} left", file=self.stream, flush=True)

    def _issues(self):
        """Cases so far that fail (a bug or precision row, or an error) and that only carry notes."""
        return f"{self.failing} failing, {self.noted} with notes only"

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
