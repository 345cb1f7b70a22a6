"""bpcheck's benchmarks: throughput and scaling, every comparison measured side by side in one run.

    make bench                                   (or: .venv/bin/python benchmarks/run.py)
    .venv/bin/python benchmarks/run.py --quick   a smoke run: tiny sizes, everything in this process

Writes results.json, results.md and PNG plots into benchmarks/ (``--out DIR`` elsewhere; a
``--quick`` run writes to bpcheck-out/bench-quick/ unless told, so it never replaces the
committed results). Sections:

1. verified cases per second, end to end (``throughput.py``);
2. seconds per case against parameter count, bpcheck against gradcheck (``scaling.py``);
3. the reference's forward + backward against torch, jax and NumPy's GEMM rate (``kernels.py``);
4. time to a caught and shrunk mutant (``mutants.py``);
5. peak memory of the report and validate runs (from section 1's processes).

Each measurement runs in a fresh interpreter (``child.py``), so imports, compiled functions,
thread settings and peak memory belong to it alone. Numbers are wall-clock
(``time.perf_counter``), short ones the median of a few repeats. The machine may be shared:
the load average is recorded beside every section, and the comparisons are ratios between
ways measured in the same run. Nothing here asserts a time.
"""
import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from benchmarks import render  # noqa: E402
from benchmarks.common import HERE, ROOT, SEED, in_child, machine  # noqa: E402

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def plan(quick):
    """Every parameter of the run, recorded as is in results.json."""
    if quick:
        grid = {"losses": ["mse", "softmax_cross_entropy"], "activations": ["tanh", "relu"], "dtypes": ["float64"]}
        return {
            "throughput": {"examples": 1, "seed": SEED, **grid, "min_cases": 0,
                           "ways": ["report_1_cold", "validate_in_process_1", "naive", "gradcheck", "check_grads"]},
            "profile": {"examples": 1, "seed": SEED, **grid, "jobs": 1},
            "scaling": {"sizes": [0, 1], "cap_s": 5.0, "probe_s": 0.5},
            "forward_backward": {"modes": ["default"], "rounds": 3, "target_s": 0.02, "breakdown_repeats": 3},
            "mutants": {"zoo": False, "options": {"losses": ["mse"], "activations": ["tanh"], "dtypes": ["float64"],
                                                  "examples": 3, "min_cases": 0, "shrink_budget": 5.0}},
        }
    return {
        "throughput": {"examples": 1, "seed": SEED, "default_report_examples": 3,
                       "ways": ["report_2_cold", "report_2_warm", "report_1_cold", "report_1_warm",
                                "report_default_2", "report_default_1", "validate_2", "validate_in_process_2",
                                "naive", "gradcheck", "check_grads"]},
        "profile": {"examples": 1, "seed": SEED, "jobs": 1},
        "scaling": {"sizes": [0, 1, 2, 3, 4], "cap_s": 60.0, "probe_s": 4.0},
        "forward_backward": {"modes": ["one_core", "default"], "rounds": 15, "target_s": 0.1,
                             "breakdown_repeats": 20},
        "mutants": {"zoo": True, "options": {}},
    }


# name -> (child function, its parameters beyond the section's). A "cache" names the JAX oracle's
# compilation cache: a fresh directory the first time a name is used (cold), the same one after (warm).
WAYS = {
    "report_2_cold": ("throughput:report_run", {"jobs": 2, "cache": "report_2"}),
    "report_2_warm": ("throughput:report_run", {"jobs": 2, "cache": "report_2"}),
    "report_1_cold": ("throughput:report_run", {"jobs": 1, "cache": "report_1"}),
    "report_1_warm": ("throughput:report_run", {"jobs": 1, "cache": "report_1"}),
    "report_default_2": ("throughput:report_run", {"jobs": 2, "examples": "default_report_examples",
                                                   "cache": "report_default_2"}),
    "report_default_1": ("throughput:report_run", {"jobs": 1, "examples": "default_report_examples",
                                                   "cache": "report_default_1"}),
    "validate_2": ("throughput:validate_run", {"jobs": 2, "target": "examples/numpy_mlp.py:backprop"}),
    "validate_in_process_2": ("throughput:validate_run", {"jobs": 2, "in_process": True,
                                                          "target": "examples/numpy_mlp.py:backprop"}),
    "validate_in_process_1": ("throughput:validate_run", {"jobs": 1, "in_process": True,
                                                          "target": "examples/numpy_mlp.py:backprop"}),
    "naive": ("throughput:naive_run", {}),
    "gradcheck": ("throughput:gradcheck_run", {"target": "examples/numpy_mlp.py:backprop"}),
    "check_grads": ("throughput:check_grads_run", {"target": "examples/numpy_mlp.py:backprop"}),
}
BPCHECK_WAYS = ("report_2_cold", "report_2_warm", "validate_2", "report_1_cold", "report_1_warm",
                "validate_in_process_1")
OTHER_WAYS = ("naive", "gradcheck", "check_grads")


class Caches:
    """Directories for the JAX oracle's persistent compilation cache, one per name, under one
    temporary directory: the environment that points a child process at one."""

    def __init__(self):
        import tempfile
        self._root = tempfile.TemporaryDirectory()
        self.seen = set()

    def env(self, name):
        if name is None:
            return {}, None
        state = "warm" if name in self.seen else "cold"
        self.seen.add(name)
        return {"JAX_COMPILATION_CACHE_DIR": os.path.join(self._root.name, name),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}, state

    def close(self):
        self._root.cleanup()


class Runner:
    def __init__(self, quick):
        self.quick = quick

    def __call__(self, function, params, env=None):
        """A measurement: in a fresh interpreter, or in this one for a quick run."""
        if not self.quick:
            return in_child(function, params, env=env)
        import importlib

        from benchmarks.common import peak_rss_mb, threads
        module, _, name = function.partition(":")
        start = time.perf_counter()
        result = getattr(importlib.import_module(f"benchmarks.{module}"), name)(params)
        result.setdefault("peak_rss", peak_rss_mb())
        result.setdefault("threads", threads())
        result["process_seconds"] = round(time.perf_counter() - start, 3)
        return json.loads(json.dumps(result, default=float))


def load():
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def section(results, name, fn):
    start, before = time.perf_counter(), load()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    results[name] = fn()
    results[name]["section_seconds"] = round(time.perf_counter() - start, 1)
    results[name]["load_average"] = {"before": before, "after": load()}
    print(f"bench: {name} done in {results[name]['section_seconds']} s", file=sys.stderr, flush=True)


def throughput(run, p, caches):
    rows = {}
    for way in p["ways"]:
        function, extra = WAYS[way]
        params = {**{k: v for k, v in p.items() if k not in ("ways", "default_report_examples")}, **extra}
        if params.get("examples") == "default_report_examples":
            params["examples"] = p["default_report_examples"]
        env, state = caches.env(params.pop("cache", None))
        rows[way] = {"function": function.split(":")[1], "params": params, "jax_cache": state,
                     **run(function, params, env)}
        print(f"bench:   {way}: {rows[way]['cases_per_s']:.2f} cases/s ({rows[way]['cases']} cases, "
              f"{rows[way]['seconds']:.1f} s)", file=sys.stderr, flush=True)
    ratios = {bp: {other: rows[bp]["cases_per_s"] / rows[other]["cases_per_s"] for other in OTHER_WAYS
                   if other in rows} for bp in BPCHECK_WAYS if bp in rows}
    return {"rows": rows, "ratios": ratios}


def profile(run, p, caches):
    """cProfile of the report way, one job: with a cold JAX compilation cache, then warm."""
    out = {}
    for state in ("cold", "warm"):
        env, got = caches.env("profile")
        assert got == state
        out[state] = run("throughput:report_run", {**p, "profile": True}, env)
    return out


def forward_backward(run, p):
    from benchmarks.kernels import ONE_THREAD_ENV
    out = {}
    for mode in p["modes"]:
        env = ONE_THREAD_ENV if mode == "one_core" else {}
        params = {k: v for k, v in p.items() if k != "modes"}
        out[mode] = run("kernels:forward_backward", {**params, "one_core": mode == "one_core"}, env)
    return {"modes": out}


def memory(results):
    rows = {}
    for way, row in results["throughput"]["rows"].items():
        if row["function"] in ("report_run", "validate_run"):
            rows[way] = {"process_maxrss_mb": row["peak_rss"]["self_mb"], **(row.get("memory") or {})}
    return {"rows": rows, "how": "resource.getrusage(RUSAGE_SELF).ru_maxrss of the process running the way; the "
                                 "whole process tree (it plus workers and isolated targets) sampled from /proc "
                                 "every 0.1 s: peak of the sum, and the largest single descendant"}


def targets(results):
    out = {}
    sc = results.get("scaling", {}).get("rows", [])
    at4 = min(sc, key=lambda r: abs(r["params"] - 1e4), default=None)
    if at4 is not None and abs(at4["params"] - 1e4) < 5e3:
        ratios = [r["ratio_float64"] for r in sc]
        out["scaling"] = {"target": "bpcheck >= 10x faster than gradcheck at 10^4 parameters, gap growing",
                          "measured": f"{at4['ratio_float64']:.0f}x (float64), {at4['ratio_float32']:.0f}x "
                                      f"(float32) at {at4['params']:,} parameters; ratios by size "
                                      + ", ".join(f"{x:.0f}x" for x in ratios),
                          "met": at4["ratio_float64"] >= 10 and at4["ratio_float32"] >= 10
                          and all(b > a for a, b in zip(ratios, ratios[1:]))}
    fb = results.get("forward_backward", {}).get("modes", {})
    if fb:
        head = fb.get("one_core") or fb.get("default")
        ratios = {d: row["reference_over_torch"] for d, row in head["rows"].items()}
        out["forward_backward"] = {
            "target": "the reference no slower than torch CPU (784-256-128-10, batch 128)",
            "measured": ", ".join(f"{d}: reference time / torch time = {r:.2f}" for d, r in ratios.items())
            + (" (one core)" if "one_core" in fb else ""),
            "met": all(r <= 1.0 for r in ratios.values())}
    mu = results.get("mutants")
    if mu and mu["shrunk_s"]["median"] is not None:
        out["mutants"] = {"target": "median time to a caught and shrunk mutant < 5 s",
                          "measured": f"median {mu['shrunk_s']['median']:.2f} s, worst {mu['shrunk_s']['worst']:.2f} s "
                                      f"({mu['caught']} of {mu['total']} caught)",
                          "met": mu["shrunk_s"]["median"] < 5.0}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, in this process")
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    parser.add_argument("--sections", default="throughput,profile,scaling,forward_backward,mutants",
                        help="comma-separated subset of sections")
    args = parser.parse_args(argv)
    if args.quick:      # in this process: keep the JAX oracle off the user's compilation cache
        os.environ.setdefault("BPCHECK_JAX_CACHE", "0")
    out = args.out or (ROOT / "bpcheck-out" / "bench-quick" if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    p = plan(args.quick)
    run = Runner(args.quick)
    caches = Caches()
    start = time.perf_counter()
    results = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
               "quick": args.quick, "machine": machine(), "parameters": p}
    if "throughput" in wanted:
        section(results, "throughput", lambda: throughput(run, p["throughput"], caches))
        results["memory"] = memory(results)
    if "profile" in wanted:
        section(results, "profile", lambda: profile(run, p["profile"], caches))
    if "scaling" in wanted:
        section(results, "scaling", lambda: run("scaling:scaling", p["scaling"], SINGLE_THREAD_ENV))
    if "forward_backward" in wanted:
        section(results, "forward_backward", lambda: forward_backward(run, p["forward_backward"]))
    if "mutants" in wanted:
        section(results, "mutants", lambda: run("mutants:mutants", p["mutants"]))
    caches.close()
    results["targets"] = targets(results)
    results["seconds"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    plots = render.plots(results, out)
    (out / "results.md").write_text(render.markdown(results, plots))
    print(f"bench: wrote results.json, results.md and {len(plots)} plots in {results['seconds']} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
