"""The runner: draw cases, judge them one by one, stream one JSON line per case.

Three steps, each usable on its own (``bpcheck report`` and ``bpcheck validate``
are both built from them):

``generate_cases(seed, examples)``
    Cases drawn by the Hypothesis strategies of ``bpcheck.strategies`` (the
    ones the property tests use), ``examples`` per cell of the grid
    loss x activation x dtype, the cell's activation forced onto at least one
    layer, network depths cycling through 1..max_depth. Deterministic for a
    seed. Ids look like ``c0042-mse-tanh-float32``.

``run_cases(cases, candidate, out_dir=...)``
    Judges every case (``bpcheck.judge``: the mpmath truth, torch and jax in
    the case's dtype, the candidate) and appends one record per case to
    ``out_dir/cases.jsonl``, flushed line by line, so an interrupted run keeps
    what it did and ``resume=True`` continues it. An implementation that
    raises, declines or replies with garbage is a record (status ``error`` or
    ``unsupported``), never a crash of the run. With ``jobs > 1`` cases go to
    spawned worker processes as JSON text and come back as JSON text; each
    worker rebuilds the candidate from its target string.

``write_reports(records, out_dir, meta=...)``
    Aggregates records into report.json, report.md and index.html
    (``bpcheck.report``).

Records are JSON: non-finite floats are written as the strings "inf", "-inf"
and "nan" (``bpcheck/schemas/report.schema.json``, ``$defs/real``) and read
back as floats by ``load_records``.
"""
import json
import math
import os
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bpcheck.spec import ACTIVATIONS, DTYPES, LAST_ACTIVATION, LOSSES, Case

CASES_FILE = "cases.jsonl"
STATUSES = ("ok", "unsupported", "error")
# Row fields that hold reals (possibly non-finite) -- revived from "inf"/"nan" strings.
REAL_FIELDS = ("err_u", "rel", "tol_u", "margin", "scale", "cosine", "max_abs", "kappa")
# Environment for worker processes: one thread each for BLAS and torch, so that
# `jobs` workers use about `jobs` cores. XLA keeps its defaults on purpose: its
# single-threaded Eigen path rounds matmuls differently, and a report must not
# depend on --jobs.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# ---- generating cases -------------------------------------------------------

def grid(losses=LOSSES, activations=ACTIVATIONS, dtypes=DTYPES):
    """The cells loss x activation x dtype, in a fixed order."""
    return [(loss, act, dtype) for loss in losses for act in activations for dtype in dtypes]


def plan(examples, cells, max_depth=6):
    """(cell, depth) for every case: round-robin over the cells, each cell's depth
    stepping through 1..max_depth (offset by the cell's index, so that even one
    example per cell covers every depth across the grid)."""
    out = []
    for k in range(examples * len(cells)):
        c, r = k % len(cells), k // len(cells)
        loss, act, _ = cells[c]
        depth = (r + c) % max_depth + 1
        if depth == 1 and LAST_ACTIVATION.get(loss, act) != act:
            depth = 2  # the loss fixes the last activation: the cell's one needs a hidden layer
        out.append((cells[c], depth))
    return out


def _cell_specs(loss, activation, dtype, depth, activations):
    """bst.specs for one cell, with ``activation`` moved onto a layer if the draw lacks it."""
    from hypothesis import strategies as st

    from bpcheck import strategies as bst

    @st.composite
    def specs(draw):
        spec = draw(bst.specs(activations=activations, losses=[loss], dtypes=[dtype],
                              min_depth=depth, max_depth=depth))
        layers = spec["layers"]
        if not any(layer["activation"] == activation for layer in layers):
            need = LAST_ACTIVATION.get(loss)
            free = [i for i in range(len(layers)) if not (need and i == len(layers) - 1)]
            if free:
                layers[draw(st.sampled_from(free))]["activation"] = activation
        return spec
    return specs()


def generate_cases(seed: int, examples: int, *, losses=LOSSES, activations=ACTIVATIONS,
                   dtypes=DTYPES, max_depth=6) -> list:
    """``examples`` cases per loss x activation x dtype cell, drawn by Hypothesis from
    ``bpcheck.strategies`` with ``seed``; the same arguments give the same cases.

    One Hypothesis run per (cell, depth), seeded from ``seed`` and the cell, so a
    cell's cases do not depend on which other cells are drawn. Each run's first
    example is Hypothesis's simplest one (all zeros: every gradient exactly 0,
    nothing to learn about rounding); it is dropped.
    """
    from bpcheck import strategies as bst

    for name, chosen, known in (("loss", losses, LOSSES), ("activation", activations, ACTIVATIONS),
                                ("dtype", dtypes, DTYPES)):
        unknown = [v for v in chosen if v not in known]
        if unknown or not chosen:
            raise ValueError(f"{name}s: unknown {unknown} (choose from {', '.join(known)})"
                             if unknown else f"{name}s: none given")
    if not 1 <= max_depth <= 64:
        raise ValueError(f"max_depth {max_depth}: must be 1..64")
    cells = [(loss, act, dtype) for loss, act, dtype in grid(losses, activations, dtypes)
             if max_depth > 1 or LAST_ACTIVATION.get(loss, act) == act]  # else no layer can take act
    todo = plan(examples, cells, max_depth)
    slots = {}  # (cell, depth) -> indices into todo
    for k, (cell, depth) in enumerate(todo):
        slots.setdefault((cell, depth), []).append(k)

    cases = [None] * len(todo)
    for ((loss, act, dtype), depth), indices in slots.items():
        strategy = bst.cases(_cell_specs(loss, act, dtype, depth, list(activations)))
        kept = []
        for attempt in range(20):  # Hypothesis may end a run early (overruns): top up
            if len(kept) >= len(indices):
                break
            drawn = []
            _draw_into(drawn, strategy, max_examples=len(indices) - len(kept) + 1,
                       seed=_mix(seed, loss, act, dtype, depth, attempt))
            kept += drawn[1:]  # drawn[0] is the simplest example
        kept = kept[:len(indices)]
        if len(kept) < len(indices):
            raise RuntimeError(f"Hypothesis drew only {len(kept)} of {len(indices)} cases "
                               f"for {loss} x {act} x {dtype}, depth {depth}")
        for k, case in zip(indices, kept):
            case.id = f"c{k:04d}-{loss}-{act}-{dtype}"
            case.meta = {"seed": seed, "index": k, "depth": depth,
                         "cell": {"loss": loss, "activation": act, "dtype": dtype}}
            cases[k] = case
    return cases


def _draw_into(drawn, strategy, *, max_examples, seed):
    """One seeded Hypothesis run (generation only) appending each example to ``drawn``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    @hseed(seed)
    @settings(max_examples=max_examples, database=None, phases=[Phase.generate], deadline=None,
              derandomize=False, suppress_health_check=list(HealthCheck), print_blob=False)
    @given(st.data())
    def run(data):
        drawn.append(data.draw(strategy))

    with _no_local_constants():
        run()


@contextmanager
def _no_local_constants():
    """Hypothesis (>= 6.131) sometimes draws literals found in the source of the project's
    own imported modules, so the same seed gives other cases after an unrelated import or
    edit. Generation here uses an empty pool of local constants instead (a private
    Hypothesis hook; if it moves, generation still works, only less reproducibly)."""
    try:
        from hypothesis.internal.conjecture import providers
        original, empty = providers._get_local_constants, providers.Constants()
    except (ImportError, AttributeError):
        yield
        return
    providers._get_local_constants = lambda: empty
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


def _mix(*parts):
    """A stable 64-bit seed from ``parts`` (Python's hash() of a str changes per process)."""
    import hashlib
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


# ---- cases and records as JSON ----------------------------------------------

def case_to_json(case):
    """A JSON-able dict holding a case exactly (float32/float64 values round-trip)."""
    def arr(a):
        a = np.asarray(a)
        return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}
    return {"id": case.id, "spec": case.spec, "meta": case.meta, "x": arr(case.x), "y": arr(case.y),
            "params": {k: arr(v) for k, v in case.params.items()}}


def case_from_json(doc):
    def arr(d):
        return np.asarray(d["data"], dtype=d["dtype"]).reshape(d["shape"])
    return Case(doc["spec"], {k: arr(v) for k, v in doc["params"].items()}, arr(doc["x"]),
                arr(doc["y"]), doc["id"], doc.get("meta", {}))


def jsonable(value):
    """``value`` with numpy scalars and arrays made plain and non-finite floats as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def dumps(record):
    return json.dumps(jsonable(record), allow_nan=False, separators=(",", ":"))


def real(value):
    """A row's real back from JSON: numbers as they are, "inf"/"-inf"/"nan" as floats."""
    if isinstance(value, str):
        return float(value)
    return value


def revive(record):
    """Undo ``jsonable`` for the real-valued fields of a record's rows."""
    for key in ("rows", "oracle_rows"):
        for row in record.get(key) or []:
            for f in REAL_FIELDS:
                if f in row:
                    row[f] = real(row[f])
            if isinstance(row.get("oracle_err_u"), dict):
                row["oracle_err_u"] = {k: real(v) for k, v in row["oracle_err_u"].items()}
            if isinstance(row.get("worst"), list):  # [index, got, truth]
                row["worst"] = [[index, real(got), real(want)] for index, got, want in row["worst"]]
    return record


def load_records(path, *, repair=False):
    """Records from a cases.jsonl. A truncated or garbled last line (a run killed
    mid-write) is skipped; with ``repair=True`` the file is cut back to the last
    good line so that appending continues cleanly."""
    path = Path(path)
    if not path.exists():
        return []
    records, good_end, offset = [], 0, 0
    with open(path, "rb") as fh:
        for line in fh:
            offset += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                break
            if not isinstance(record, dict) or "case" not in record or not line.endswith(b"\n"):
                break
            records.append(revive(record))
            good_end = offset
    if repair and good_end < path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return records


# ---- judging one case -------------------------------------------------------

def judge_case(case, candidate, who=None):
    """The record of one case: never raises for anything the candidate or an oracle does."""
    from bpcheck.backends import AdapterError, Unsupported
    from bpcheck.judge import judge, reference_results

    who = who or getattr(candidate, "name", "candidate")
    record = {"case": case.id, "who": who, "spec": case.spec, "batch": int(case.batch),
              "meta": case.meta, "status": "ok", "stage": None, "message": "",
              "rows": [], "oracle_rows": [], "kinks": [], "seconds": 0.0}
    start = time.perf_counter()
    stage = "candidate"
    try:
        # Overflow and division warnings of saturated cases are expected; the rows tell.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            result = candidate.run(case)  # first: a declined case costs no truth
            stage = "oracles"
            truth, oracles = reference_results(case)
            j = judge(case, candidate, who=who, result=result, truth=truth, oracles=oracles)
        record.update(rows=j.rows, oracle_rows=j.oracle_rows, kinks=j.kinks)
    except Unsupported as exc:
        record.update(status="unsupported", stage=stage, message=str(exc))
    except AdapterError as exc:
        record.update(status="error", stage=stage, message=str(exc))
    except Exception as exc:  # a harness bug on a strange case: record it, go on
        record.update(status="error", stage="harness", message=(
            f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=-3))))
    record["seconds"] = round(time.perf_counter() - start, 4)
    return record


def _backend(candidate):
    if isinstance(candidate, str):
        from bpcheck.backends import load_target
        return load_target(candidate)
    return candidate


# ---- worker processes -------------------------------------------------------

_WORKER = {}


def set_single_thread(environ=os.environ):
    """Pin BLAS and torch to one thread (best before torch is imported)."""
    environ.update(SINGLE_THREAD_ENV)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _worker_init(target, who):
    set_single_thread()
    try:
        import torch
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    _WORKER["candidate"], _WORKER["who"], _WORKER["error"] = None, who, None
    try:
        _WORKER["candidate"] = _backend(target)
    except Exception as exc:  # reported on every case, the run goes on
        _WORKER["error"] = f"cannot load candidate {target!r}: {exc}"


def _worker_run(case_text):
    """JSON text in, JSON text out: nothing but strings crosses the process boundary."""
    case = case_from_json(json.loads(case_text))
    if _WORKER["error"]:
        return dumps({"case": case.id, "who": _WORKER["who"], "spec": case.spec, "batch": case.batch,
                      "meta": case.meta, "status": "error", "stage": "candidate",
                      "message": _WORKER["error"], "rows": [], "oracle_rows": [], "kinks": [],
                      "seconds": 0.0})
    return dumps(judge_case(case, _WORKER["candidate"], _WORKER["who"]))


# ---- running ----------------------------------------------------------------

def run_cases(cases, candidate, *, out_dir, jobs=1, resume=False, who=None, progress=True) -> list:
    """Judge ``cases``; one JSON line per case in ``out_dir/cases.jsonl``; records in case order.

    ``candidate`` is a backend (``.run(case)``, ``.name``) or a target string
    ("reference", "module:function", "path.py:function"); only a target string
    can be rebuilt in worker processes, so ``jobs > 1`` needs one.
    """
    jobs = max(1, int(jobs))
    if jobs > 1 and not isinstance(candidate, str):
        raise ValueError("jobs > 1 needs the candidate as a target string (e.g. 'reference' or "
                         "'module:function'): worker processes rebuild it from that")
    who = who or (candidate if isinstance(candidate, str) else getattr(candidate, "name", "candidate"))
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

    bar = Progress(len(cases), len(done), enabled=progress)
    with open(path, "a", encoding="utf-8") as out:
        def emit(line, record):
            out.write(line + "\n")
            out.flush()
            done[record["case"]] = record
            bar.advance(record)

        try:
            if jobs == 1:
                backend = _backend(candidate)
                for case in todo:
                    record = judge_case(case, backend, who)
                    line = dumps(record)
                    emit(line, revive(json.loads(line)))
            else:
                _run_pool(todo, candidate, who, jobs, emit)
        finally:
            bar.close()
    return [done[i] for i in ids if i in done]


def _run_pool(todo, target, who, jobs, emit):
    """Feed cases to ``jobs`` spawned workers, a few in flight each. A worker that dies
    (a segfault in the candidate, say) breaks the pool and the cases in flight with it:
    in a fresh pool each of those runs again alone, so a second death names its case."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    fresh = list(reversed(todo))  # pop() from the end keeps the order
    suspects = []
    while fresh or suspects:
        pool = _start_pool(target, who, jobs)
        running, broken = {}, False
        try:
            while (fresh or suspects or running) and not broken:
                if suspects:
                    if not running:
                        case = suspects.pop()
                        running[pool.submit(_worker_run, _case_text(case))] = (case, True)
                else:
                    while fresh and len(running) < 2 * jobs:
                        case = fresh.pop()
                        running[pool.submit(_worker_run, _case_text(case))] = (case, False)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    case, alone = running.pop(future)
                    try:
                        line = future.result()
                    except BrokenProcessPool:
                        broken = True
                        _died(case, alone, who, suspects, emit)
                        continue
                    emit(line, revive(json.loads(line)))
            for case, alone in running.values():  # in flight when the pool broke
                _died(case, alone, who, suspects, emit)
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)


def _case_text(case):
    return json.dumps(case_to_json(case))


def _ping():
    return "pong"


def _start_pool(target, who, jobs):
    """A pool of spawned workers, checked to start (a script without an
    ``if __name__ == "__main__":`` guard re-runs itself in every worker and fails here)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(target, who))
    try:
        pool.submit(_ping).result(timeout=600)
    except Exception as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        raise RuntimeError(f"worker processes do not start ({type(exc).__name__}: {exc}); run with "
                           "jobs=1 to see why (a script using jobs > 1 needs an "
                           "`if __name__ == '__main__':` guard)") from None
    return pool


def _died(case, alone, who, suspects, emit):
    if not alone:
        suspects.append(case)
        return
    record = {"case": case.id, "who": who, "spec": case.spec, "batch": int(case.batch), "meta": case.meta,
              "status": "error", "stage": "candidate", "rows": [], "oracle_rows": [], "kinks": [],
              "message": "the worker process died while running this case (a crash in the candidate?)",
              "seconds": 0.0}
    line = dumps(record)
    emit(line, revive(json.loads(line)))


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
        self.failing = 0

    def advance(self, record):
        self.done += 1
        self.new += 1
        if record.get("status") != "ok" or any(r.get("class") != "pass" for r in record.get("rows", [])):
            self.failing += 1
        if not self.enabled:
            return
        now = time.monotonic()
        rate = self.new / max(now - self.start, 1e-9)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=f"{rate:.2f} cases/s",
                            issues=f"{self.failing} not passing")
        elif now - self.last >= 10 or self.done == self.total:
            self.last = now
            left = (self.total - self.done) / rate if rate > 0 else math.inf
            print(f"bpcheck: {self.done}/{self.total} cases, {rate:.2f} cases/s, "
                  f"{self.failing} not passing, ~{_duration(left)} left", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def write_reports(records, out_dir, *, meta: dict, extra_sections=()) -> dict:
    """Aggregate records into report.json, report.md and index.html in ``out_dir``; return the report."""
    from bpcheck.report import write_reports as write
    return write(records, out_dir, meta=meta, extra_sections=extra_sections)
