"""Shared pieces of the benchmarks: timing, the machine record, networks of a given size, child processes.

Every measurement that must not share a process with another one (its imports, its compiled
functions, its peak memory) runs in a fresh interpreter: ``in_child("module:function", params)``
starts ``benchmarks/child.py``, which calls the function and hands back its JSON result.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 20240601                       # bpcheck's default case seed
LIBRARIES = ("numpy", "scipy", "torch", "jax", "jaxlib", "optax", "python-flint", "mpmath", "hypothesis",
             "matplotlib")


# ---- timing ------------------------------------------------------------------

def median_time(fn, repeats=5, calls=1, warmup=1):
    """Median seconds per call of ``fn`` over ``repeats`` timings of ``calls`` calls each
    (after ``warmup`` untimed calls); also the spread (min, max)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats, "calls_per_repeat": calls}


def interleaved(fns, rounds=9, target_s=0.1, warmup=2):
    """``median_time`` for several functions measured in turn: every round times each of them once
    (``calls`` calls filling about ``target_s``), the starting one rotating, so a change in the
    machine's load falls on all of them alike. {name: stats}."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    calls = {name: calls_for(fns[name], target_s, cap=500) for name in names}
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, n = fns[name], calls[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "repeats": rounds,
                   "calls_per_repeat": calls[name], "interleaved": True} for name, t in times.items()}


def calls_for(fn, target_s=0.2, cap=10_000):
    """How many calls of ``fn`` fill about ``target_s`` seconds (one call is timed to decide)."""
    start = time.perf_counter()
    fn()
    one = time.perf_counter() - start
    return int(max(1, min(cap, target_s / max(one, 1e-7))))


def peak_rss_mb():
    """Peak resident memory (MB) of this process and of its largest waited-for child."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20      # Linux: KiB; macOS: bytes
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"self_mb": round(own, 1), "largest_child_mb": round(kids, 1) if kids else None}


class TreeMemory:
    """Samples the resident memory of this process and all its descendants every ``interval`` s
    (from /proc) in a background thread: the peak of the sum, and of the largest descendant.
    (``ru_maxrss`` of children is no use for that on Linux: a child forked from this process
    starts with this process's peak, even across exec.)"""

    def __init__(self, interval=0.1):
        import threading
        self.interval, self.peak_total, self.peak_child = interval, 0, 0
        self.available = os.path.exists(f"/proc/{os.getpid()}/statm")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid):
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _children(pid):
        out = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except OSError:
            pass
        return out

    def sample(self):
        me = os.getpid()
        todo, kids = self._children(me), []
        while todo:
            pid = todo.pop()
            kids.append(self._rss(pid))
            todo += self._children(pid)
        self.peak_total = max(self.peak_total, self._rss(me) + sum(kids))
        self.peak_child = max([self.peak_child] + kids)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.available:
            self._stop.set()
            self._thread.join()

    def result(self):
        if not self.available:
            return None
        return {"peak_tree_mb": round(self.peak_total / 2**20, 1),
                "peak_largest_descendant_mb": round(self.peak_child / 2**20, 1) if self.peak_child else None,
                "interval_s": self.interval}


# ---- the machine -------------------------------------------------------------

def blas_threads(what="get_num_threads"):
    """OpenBLAS's thread count (or ``what="get_corename"``: the kernel set it picked for this CPU),
    read from the library NumPy loaded; None if it cannot be found."""
    import ctypes
    import numpy  # noqa: F401  (loads the library)
    try:
        with open("/proc/self/maps") as maps:
            libs = sorted({line.split()[-1] for line in maps if "openblas" in line.split()[-1].lower()})
    except OSError:
        return None
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in (f"scipy_openblas_{what}64_", f"openblas_{what}64_", f"openblas_{what}"):
            fn = getattr(handle, name, None)
            if fn is not None:
                if what == "get_corename":
                    fn.restype = ctypes.c_char_p
                    return fn().decode()
                return int(fn())
    return None


def threads():
    """Thread counts in this process: BLAS, torch, the environment variables that set them."""
    out = {"blas": blas_threads(),
           "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                    "XLA_FLAGS")}}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch"] = torch.get_num_threads()
        out["torch_interop"] = torch.get_num_interop_threads()
    if "jax" in sys.modules:
        out["jax_devices"] = [str(d) for d in sys.modules["jax"].devices()]
    return out


def machine():
    from importlib import metadata
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES + ("bpcheck",):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    cpu = None
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    except OSError:
        pass
    flags = set()
    try:
        with open("/proc/cpuinfo") as info:
            flags = set(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    except OSError:
        pass
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": cpu,
            "simd": [f for f in ("avx2", "fma", "avx512f") if f in flags],
            "openblas_kernels": blas_threads("get_corename"),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "libraries": versions}


# ---- networks ----------------------------------------------------------------

def mlp_case(input_dim, hidden, classes, batch, dtype, *, activation="tanh", seed=0):
    """A bpcheck Case: ``hidden`` layers of ``activation``, an identity layer of ``classes`` logits,
    softmax cross-entropy; weights ~ N(0, 1/fan_in), x ~ N(0, 1), random labels."""
    from bpcheck.core.spec import Case, param_shapes
    rng = np.random.default_rng(seed)
    spec = {"input_dim": input_dim, "loss": "softmax_cross_entropy", "dtype": dtype,
            "layers": [{"units": w, "activation": activation} for w in hidden]
            + [{"units": classes, "activation": "identity"}]}
    params = {k: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(dtype) for k, s in param_shapes(spec).items()}
    x = rng.standard_normal((batch, input_dim)).astype(dtype)
    return Case(spec, params, x, rng.integers(0, classes, batch), id=f"mlp-{input_dim}-{hidden}-{classes}")


def n_params(spec):
    dims = [spec["input_dim"]] + [layer["units"] for layer in spec["layers"]]
    return sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(len(dims) - 1))


def arch_label(spec):
    return "-".join(str(d) for d in [spec["input_dim"]] + [layer["units"] for layer in spec["layers"]])


# ---- child processes -----------------------------------------------------------

def in_child(function, params, *, timeout=1800, env=None):
    """Run ``benchmarks.<module>:<function>(params)`` in a fresh interpreter; its JSON result,
    with the child's own wall time from start to exit (imports included) as ``process_seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / "child.py"), function, json.dumps(params), str(out)],
                              cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise RuntimeError(f"{function} failed (exit {proc.returncode}):\n{tail}")
        result = json.loads(out.read_text())
    result["process_seconds"] = round(seconds, 3)
    return result
