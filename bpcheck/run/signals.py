"""SIGTERM handled like Ctrl-C: a run stops between cases, keeps every record, writes a partial report.

Inside ``interruptible()`` SIGTERM raises KeyboardInterrupt in the main thread,
as Ctrl-C does; ``bpcheck.run.pool.run_cases`` turns either into ``Interrupted``
carrying the records judged so far (each already flushed to ``cases.jsonl``),
and the commands write a report from them and exit with ``EXIT_INTERRUPTED``.
``--resume`` then continues the run to the same result as an uninterrupted one.
"""
import signal
import threading
from contextlib import contextmanager

EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """The run was interrupted; ``records`` are those judged before it was."""

    def __init__(self, records):
        super().__init__(f"interrupted after {len(records)} cases")
        self.records = records


@contextmanager
def interruptible():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
