"""Run many cases on every core: chunks of cases to worker processes, records streamed to disk.

``run_cases(cases, candidate, out_dir=...)`` judges every case
(``bpcheck.run.engine.judge_cases``) and appends one JSON line per case to
``out_dir/cases.jsonl``, flushed as it arrives, so an interrupted run
(Ctrl-C, SIGTERM, SIGKILL) keeps every finished case and ``resume=True``
continues it to the same result. With ``jobs > 1`` chunks of cases go to
spawned worker processes as JSON text and come back as JSON text; each worker
builds the candidate from its ``Candidate`` description and keeps it.

The candidate runs isolated by default (a Python target in its own
``bpcheck.run.pyworker`` process, an ``--exec`` program in its own process): a
crash, a hang or an exit is a record, the candidate is restarted, the run
goes on. An in-process candidate that kills its worker breaks the pool: the
cases of the chunks in flight run again one by one in a fresh pool, and a
case that kills it again is recorded as the one that did.

``scheduler``: the same chunks go to a Dask distributed cluster instead
(``tcp://host:port`` of a running scheduler; the optional extra
``bpcheck[dask]``). Each Dask worker thread builds the candidate once and keeps
it; only JSON text crosses to and from the workers, as with the local pool; a
chunk whose worker dies is run again case by case, as above.
"""
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from bpcheck.core.records import CASES_FILE, case_from_json, case_to_json, dumps, load_records, revive

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# A worker process costs 1-3 s to start (imports, JAX tracing); a case 5-15 ms. Below this many
# cases per worker, fewer workers finish sooner (benchmarks/results.md).
CASES_PER_WORKER = 300
BUILTINS = ("reference", "torch", "jax", "numeric")
CONNECT_SECONDS = 30                # how long to try a Dask scheduler's address


@dataclass(frozen=True)
class Candidate:
    """How to build the implementation under test, in any process.

    ``target``: a Python ``module:function`` / ``file.py:function`` or a builtin name;
    ``argv``: a protocol program instead. ``isolate``: run a Python target in a process of
    its own (builtins always run in-process: they are bpcheck's own). ``timeout`` seconds per
    case, ``memory_mb`` for an isolated Python target.
    """
    target: str = None
    argv: tuple = None
    isolate: bool = True
    timeout: float = 10.0
    memory_mb: int = 4096
    name: str = None

    @property
    def contained(self):
        """True when nothing the candidate does can take bpcheck's own process down: it runs in a
        process of its own, or it is bpcheck's own code."""
        return bool(self.argv) or self.isolate or self.target in BUILTINS

    @property
    def label(self):
        return self.name or (" ".join(self.argv) if self.argv else self.target)

    def build(self):
        from bpcheck.run.protocol import SubprocessBackend, isolated_python
        if self.argv:
            return SubprocessBackend(list(self.argv), timeout=self.timeout, name=self.name)
        if self.isolate and self.target not in BUILTINS:
            return isolated_python(self.target, timeout=self.timeout, memory_mb=self.memory_mb)
        from bpcheck.run.backends import load_target
        return load_target(self.target, self.name or self.target, timeout=self.timeout)


def set_single_thread(environ=os.environ):
    """Pin BLAS and torch to one thread (best before torch is imported)."""
    environ.update(SINGLE_THREAD_ENV)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


# ---- worker processes -------------------------------------------------------

_WORKER = {}


def _worker_state(candidate, who, oracles):
    state = {"candidate": None, "who": who, "oracles": oracles, "error": None}
    try:
        state["candidate"] = candidate.build()
    except Exception as exc:  # reported on every case, the run goes on
        state["error"] = f"cannot load candidate {candidate.label!r}: {exc}"
    return state


def _worker_init(candidate, who, oracles):
    set_single_thread()             # torch, if an oracle imports it later, reads OMP_NUM_THREADS
    _WORKER.update(_worker_state(candidate, who, oracles))


def _worker_run(chunk_text, state=_WORKER):
    """JSON text in, JSON text out: nothing but strings crosses the process boundary."""
    from bpcheck.run.engine import judge_cases
    cases = [case_from_json(doc) for doc in json.loads(chunk_text)]
    if state["error"]:
        return [dumps(_failed(case, state["who"], state["error"])) for case in cases]
    records = judge_cases(cases, state["candidate"], who=state["who"], oracles=state["oracles"],
                          repeat_first=not state.get("repeated"))
    state["repeated"] = True
    return [dumps(r) for r in records]


_THREAD = threading.local()


def _dask_run(candidate, who, oracles, chunk_text):
    """``_worker_run`` on a Dask worker: each worker thread builds the candidate once per run."""
    key = (candidate, who, oracles)
    if getattr(_THREAD, "key", None) != key:
        _THREAD.key, _THREAD.state = key, _worker_state(candidate, who, oracles)
    return _worker_run(chunk_text, _THREAD.state)


def _failed(case, who, message, stage="candidate"):
    return {"case": case.id, "who": who, "spec": case.spec, "batch": int(case.batch), "meta": case.meta,
            "status": "error", "stage": stage, "message": message, "rows": [], "oracle_rows": [],
            "findings": [], "limits": [], "seconds": 0.0}


# ---- running ----------------------------------------------------------------

def run_cases(cases, candidate, *, out_dir, jobs=1, resume=False, who=None, oracles=(), progress=True,
              chunk=None, backend=None, observe=None, scheduler=None):
    """Judge ``cases``; one JSON line per case in ``out_dir/cases.jsonl``; records in case order.

    ``candidate`` is a ``Candidate`` (or a target string). ``jobs`` is the most worker
    processes to use: one per ``CASES_PER_WORKER`` cases to judge (all ``jobs`` for an
    in-process candidate, whose crash must take a worker down, not this process). ``backend``: an already
    built backend, used when the run stays in this process. ``observe(record)`` is called
    for each record as it is written. ``scheduler``: the address of a Dask distributed scheduler
    to run the chunks on instead (``jobs`` is then taken from the cluster's threads).
    """
    from bpcheck.run.progress import Progress
    if isinstance(candidate, str):
        candidate = Candidate(candidate)
    jobs = max(1, int(jobs))
    who = who or candidate.label
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CASES_FILE
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    done = {}
    if resume:
        wanted = {c.id: c for c in cases}
        for record in load_records(path, repair=True):
            case = wanted.get(record["case"])
            if case is None:
                continue
            if record.get("spec") != case.spec or record.get("who") != who:
                raise ValueError(f"{path}: case {record['case']} was made by another run "
                                 f"(different spec or candidate); rerun without --resume")
            done[record["case"]] = record
    else:
        path.write_text("")
    todo = [c for c in cases if c.id not in done]
    client = _dask_client(scheduler) if scheduler else None
    if client is not None:
        jobs = max(1, sum(client.nthreads().values()))
    elif candidate.contained:                  # a worker costs seconds to start: fewer for a short run
        jobs = min(jobs, max(1, len(todo) // CASES_PER_WORKER))
    size = chunk or max(1, min(64, -(-len(todo) // (4 * jobs)) if todo else 1))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    bar = Progress(len(cases), len(done), enabled=progress)
    with open(path, "a", encoding="utf-8") as out:
        def emit(line):
            record = revive(json.loads(line))
            out.write(line + "\n")
            out.flush()
            done[record["case"]] = record
            bar.advance(record)
            if observe is not None:
                observe(record)
        try:
            if client is None and jobs == 1:
                _run_here(chunks, candidate, backend, who, oracles, emit)
            else:
                _run_pool(chunks, candidate, who, oracles, jobs, emit, client)
        except KeyboardInterrupt:
            from bpcheck.run.signals import Interrupted
            raise Interrupted([done[i] for i in ids if i in done]) from None
        finally:
            bar.close()
            if client is not None:
                client.close()
    return [done[i] for i in ids if i in done]


def _run_here(chunks, candidate, backend, who, oracles, emit):
    from bpcheck.run.engine import judge_cases
    own = backend is None
    try:
        backend = backend or candidate.build()
    except Exception as exc:
        for chunk in chunks:
            for case in chunk:
                emit(dumps(_failed(case, who, f"cannot load candidate {candidate.label!r}: {exc}")))
        return
    try:
        first = True
        for chunk in chunks:
            for record in judge_cases(chunk, backend, who=who, oracles=oracles, repeat_first=first):
                emit(dumps(record))
            first = False
    finally:
        if own and hasattr(backend, "close"):
            backend.close()


def _dask_client(address):
    try:
        from distributed import Client
    except ImportError:
        raise RuntimeError("--scheduler needs Dask distributed: pip install 'bpcheck[dask]'") from None
    try:
        return Client(address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


class _DaskPool:
    """The two calls ``_run_pool`` makes of a process pool, on a Dask client."""

    def __init__(self, client, candidate, who, oracles):
        self.executor, self.args = client.get_executor(pure=False), (candidate, who, tuple(oracles))

    def submit(self, fn, text):
        return self.executor.submit(_dask_run, *self.args, text)

    def shutdown(self, wait=True, cancel_futures=False):
        pass                                # the client is closed by run_cases


def _run_pool(chunks, candidate, who, oracles, jobs, emit, client=None):
    """Feed chunks to ``jobs`` spawned workers (or a Dask ``client``'s), two in flight each. A
    worker that dies breaks the pool and the chunks in flight with it: each of their cases runs
    again alone in a fresh pool, so a second death names its case. ``submit`` on a local pool
    that is breaking may raise OSError instead of BrokenProcessPool ("handle is closed": the
    executor spawns a replacement worker inside submit and pickles the queues its manager thread
    has just closed); that is a dead pool too."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool
    died = (BrokenProcessPool,)
    if client is not None:
        from distributed import KilledWorker
        died = (BrokenProcessPool, KilledWorker)
    submit_died = died if client is not None else died + (OSError,)   # a Dask client's OSError is not ours

    fresh = list(reversed(chunks))          # pop() from the end keeps the order
    suspects = []                           # single cases, each to run alone
    while fresh or suspects:
        pool = (_DaskPool(client, candidate, who, oracles) if client is not None
                else _start_pool(candidate, who, oracles, jobs))
        running, broken = {}, False
        try:
            while (fresh or suspects or running) and not broken:
                try:
                    if suspects:
                        if not running:
                            case = suspects[-1]
                            running[pool.submit(_worker_run, _text([case]))] = ([case], True)
                            suspects.pop()
                    else:
                        while fresh and len(running) < 2 * jobs:
                            running[pool.submit(_worker_run, _text(fresh[-1]))] = (fresh[-1], False)
                            fresh.pop()
                except submit_died:                 # broke since the last wait: its chunk stays queued
                    broken = True
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    chunk, alone = running.pop(future)
                    try:
                        lines = future.result()
                    except died:
                        broken = client is None      # a Dask cluster replaces its own workers
                        _died(chunk, alone, who, suspects, emit)
                        continue
                    for line in lines:
                        emit(line)
            for chunk, alone in running.values():   # in flight when the pool broke
                _died(chunk, alone, who, suspects, emit)
        except KeyboardInterrupt:                   # stop now: what is finished is on disk
            broken = True
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)


def _text(cases):
    return json.dumps([case_to_json(c) for c in cases])


def _ping():
    return "pong"


def _start_pool(candidate, who, oracles, jobs):
    """A pool of spawned workers, checked to start (a script without an
    ``if __name__ == "__main__":`` guard re-runs itself in every worker and fails here)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(candidate, who, tuple(oracles)))
    try:
        pool.submit(_ping).result(timeout=600)
    except Exception as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        raise RuntimeError(f"worker processes do not start ({type(exc).__name__}: {exc}); run with "
                           "jobs=1 to see why (a script using jobs > 1 needs an "
                           "`if __name__ == '__main__':` guard)") from None
    return pool


def _died(chunk, alone, who, suspects, emit):
    if not alone:
        suspects.extend(reversed(chunk))
        return
    (case,) = chunk
    emit(dumps(_failed(case, who, "the worker process died while running this case (a crash in the "
                                  "candidate, run in-process?)")))
