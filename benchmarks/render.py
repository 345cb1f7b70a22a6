"""results.md and the PNG plots (matplotlib, Agg) from the results dict of ``run.py``."""
import math

LABELS = {
    "report_2_cold": "`bpcheck report` (reference + torch + jax + truth), 2 jobs, cold JAX cache",
    "report_2_warm": "`bpcheck report`, 2 jobs, warm JAX cache",
    "report_1_cold": "`bpcheck report`, 1 job, cold JAX cache",
    "report_1_warm": "`bpcheck report`, 1 job, warm JAX cache",
    "report_default_2": "`bpcheck report`, 2 jobs, examples=3 (`make report`), cold JAX cache",
    "report_default_1": "`bpcheck report`, 1 job, examples=3, cold JAX cache",
    "validate_2": "`bpcheck validate numpy_mlp` (isolated), 2 jobs",
    "validate_in_process_2": "`bpcheck validate numpy_mlp --in-process`, 2 jobs",
    "validate_in_process_1": "`bpcheck validate numpy_mlp --in-process`, 1 job",
    "naive": "naive: per case reference + torch + fresh `jax.jit` + mpmath truth + judge",
    "gradcheck": "`torch.autograd.gradcheck` on numpy_mlp (float64)",
    "check_grads": "`jax.test_util.check_grads` on numpy_mlp (float64)",
}
SHORT = {"report_2_cold": "report, 2 jobs, cold", "report_2_warm": "report, 2 jobs, warm",
         "report_1_cold": "report, 1 job, cold", "report_1_warm": "report, 1 job, warm",
         "report_default_2": "report examples=3, 2 jobs", "report_default_1": "report examples=3, 1 job",
         "validate_2": "validate, 2 jobs", "validate_in_process_2": "validate in-process, 2 jobs",
         "validate_in_process_1": "validate in-process, 1 job",
         "naive": "naive", "gradcheck": "gradcheck", "check_grads": "check_grads"}
RATIO_COLUMNS = (("report_2_cold", "report 2 jobs cold"), ("report_2_warm", "report 2 jobs warm"),
                 ("validate_2", "validate 2 jobs"))


def fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def seconds(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f} s"
    if x >= 1:
        return f"{x:.3g} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3g} ms"
    return f"{x * 1e6:.3g} µs"


# ---- plots ---------------------------------------------------------------------

def plots(results, out):
    """Write the plots; return {name: file name} of those written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        written[name] = f"{name}.png"

    sc = results.get("scaling", {}).get("rows")
    if sc:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        p = [r["params"] for r in sc]
        for dtype, marker in (("float32", "o"), ("float64", "s")):
            ax.plot(p, [r[f"bpcheck_{dtype}"]["median_s"] for r in sc], marker=marker, label=f"bpcheck {dtype}")
        g = [r["gradcheck_float64"] for r in sc]
        ax.plot(p, [x["seconds"] for x in g], color="C3", label="gradcheck float64")
        meas = [(q, x["seconds"]) for q, x in zip(p, g) if not x["extrapolated"]]
        extra = [(q, x["seconds"]) for q, x in zip(p, g) if x["extrapolated"]]
        if meas:
            ax.plot(*zip(*meas), "D", color="C3", label="  measured")
        if extra:
            ax.plot(*zip(*extra), "D", color="C3", markerfacecolor="white", label="  extrapolated")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters (tanh MLP, softmax cross-entropy, batch 32)")
        ax.set_ylabel("seconds per case")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax.set_title("Seconds per checked case against parameter count")
        save(fig, "scaling")

    tp = results.get("throughput", {}).get("rows")
    if tp:
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(tp) + 1.2))
        names = list(tp)
        rates = [tp[n]["cases_per_s"] for n in names]
        bars = ax.barh([SHORT[n] for n in names], rates,
                       color=["C0" if n.startswith(("report", "validate")) else "C3" for n in names])
        ax.bar_label(bars, [f"{r:.1f}" for r in rates], padding=3, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(rates) * 1.15)
        ax.set_xlabel("verified cases per second (blue: bpcheck)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title("Default case distribution, same seed")
        save(fig, "throughput")

    fb = results.get("forward_backward", {}).get("modes")
    if fb:
        fig, axes = plt.subplots(1, len(fb), figsize=(3.4 * len(fb) + 0.6, 3.6), squeeze=False)
        for ax, (mode, res) in zip(axes[0], fb.items()):
            dtypes = list(res["rows"])
            impls = ["reference", "torch", "jax"]
            width = 0.25
            for k, impl in enumerate(impls):
                ax.bar([i + (k - 1) * width for i in range(len(dtypes))],
                       [res["rows"][d]["impl"][impl]["ms"] for d in dtypes], width, label=impl)
            ax.set_xticks(range(len(dtypes)), dtypes)
            ax.set_ylabel("ms per forward + backward")
            ax.set_title({"one_core": "one core, one thread each", "default": "default threads"}.get(mode, mode))
            ax.grid(True, axis="y", alpha=0.3)
        axes[0][0].legend()
        fig.suptitle("784-256-128-10, batch 128")
        save(fig, "forward_backward")

    mu = results.get("mutants", {}).get("rows")
    if mu:
        caught = sorted([r for r in mu if r["caught"]], key=lambda r: r["shrunk_s"] or 0)
        if caught:
            fig, ax = plt.subplots(figsize=(6.4, 0.18 * len(caught) + 1.4))
            y = range(len(caught))
            ax.barh(y, [r["shrunk_s"] or 0 for r in caught], color="C1", label="to the shrunk diagnosis")
            ax.barh(y, [r["first_fail_s"] or 0 for r in caught], color="C0", label="to the first failing case")
            ax.axvline(5, color="k", linestyle="--", linewidth=1, label="target median 5 s")
            ax.set_yticks(list(y), [r["name"] for r in caught], fontsize=6)
            ax.invert_yaxis()
            ax.set_xlabel("seconds from the start of `bpcheck validate`")
            ax.legend(fontsize=7, loc="lower right")
            ax.set_title("Time to a caught and shrunk mutant")
            save(fig, "mutants")
    return written


# ---- markdown ------------------------------------------------------------------

def markdown(results, plots):
    m = results["machine"]
    lib = m["libraries"]
    L = ["# bpcheck benchmarks", "",
         f"Generated by `make bench` (`{results['command']}`) on {results['generated'][:10]} in "
         f"{results['seconds']:.0f} s{' — QUICK SMOKE RUN, not representative' if results['quick'] else ''}. "
         f"Machine: {m['platform']}, {m['processor'] or m['machine']}, {m['cpu_count']} CPUs "
         f"({', '.join(m.get('simd') or [])}; NumPy's OpenBLAS runs its {m.get('openblas_kernels')} kernels); Python "
         f"{lib['python']}, numpy {lib['numpy']}, torch {lib['torch']}, jax {lib['jax']}, python-flint "
         f"{lib['python-flint']}, mpmath {lib['mpmath']}. All parameters, thread counts and per-run "
         "details are in `results.json`. Wall-clock seconds (`time.perf_counter`); short measurements "
         "are medians of repeats; comparisons are ratios within this run. The machine was shared: load "
         "averages are recorded per section.", ""]
    tg = results.get("targets", {})
    if tg:
        L += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for t in tg.values():
            L.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
        L.append("")
    if "throughput" in results:
        L += _throughput(results)
    if "profile" in results:
        L += _profile(results["profile"])
    if "scaling" in results:
        L += _scaling(results["scaling"])
    if "forward_backward" in results:
        L += _forward_backward(results["forward_backward"])
    if "mutants" in results:
        L += _mutants(results["mutants"])
    if "memory" in results:
        L += _memory(results["memory"])
    for name, file in plots.items():
        L += [f"![{name}]({file})", ""]
    return "\n".join(L).rstrip() + "\n"


def _load(sec):
    la = sec.get("load_average") or {}
    return f"load average {la.get('before', ['?'])[0]} → {la.get('after', ['?'])[0]}"


def _throughput(results):
    sec = results["throughput"]
    rows = sec["rows"]
    any_row = next(iter(rows.values()))
    fam = any_row.get("families", {})
    plain = fam.get("plain", 0)
    grid = "cell of a subset of the loss × activation × dtype cells" if any_row["params"].get("losses") \
        else "loss × activation × dtype cell"
    L = ["## 1. Verified cases per second, end to end", "",
         f"Each way in a fresh process on the same cases, `generate_cases(seed={any_row['params'].get('seed')}, "
         f"examples={any_row['params'].get('examples')})`: {any_row['cases']} cases, {plain} plain (one per "
         f"{grid}) and {any_row['cases'] - plain} from the edge families, median "
         f"{any_row['params_median']:.0f} parameters; the \"examples=3\" rows draw `make report`'s 3 per cell. "
         "Third-party imports happen before the clock; everything else (generation, worker start-up, JAX "
         f"compiles, judging, writing reports) inside; one run each. {_load(sec)}.",
         "Cold/warm: the JAX oracle's persistent compilation cache starts empty / holds what the same way "
         "compiled in its cold run. Ratio columns: that bpcheck way's cases/s over this row's.", ""]
    cols = [(k, label) for k, label in RATIO_COLUMNS if k in rows]
    L += ["| way | cases | seconds | cases/s |" + "".join(f" {label} ÷ this |" for _, label in cols),
          "|---|---|---|---|" + "---|" * len(cols)]
    for way, r in rows.items():
        ratios = "".join(f" {fmt(rows[k]['cases_per_s'] / r['cases_per_s'])}× |" for k, _ in cols)
        L.append(f"| {LABELS[way]} | {r['cases']} | {r['seconds']:.1f} | {r['cases_per_s']:.2f} |{ratios}")
    notes = []
    for way in ("gradcheck", "check_grads"):
        if way in rows:
            o = rows[way]["outcome"]
            notes.append(f"{way} passed {o['pass']}, failed {o['fail']}, raised on {o['error']} of the cases")
    if "naive" in rows:
        v = rows["naive"]["verdicts"]
        notes.append(f"the naive harness judged {v['pass']} pass, {v['fail']} fail, {v['error']} errors")
    if notes:
        L += ["", "gradcheck and check_grads get numpy_mlp through its only entry point, `backprop`, so every "
                  "perturbed evaluation runs its whole forward + backward. Outcomes (the ways check different "
                  "things; only the time is compared): " + "; ".join(notes) + "."]
    return L + [""]


def _profile(prof):
    L = ["## Profile of the report run", ""]
    for state in ("cold", "warm"):
        run = prof.get(state)
        if not run:
            continue
        p = run.get("profile", {})
        L += [f"cProfile of the `bpcheck report` way, 1 job, {run['cases']} cases, {state} JAX compilation cache: "
              f"{run['seconds']:.1f} s under the profiler, of which the candidate's own functions "
              f"{p.get('candidate_own_s', 0):.2f} s. bpcheck's and the oracles' functions by cumulative time, then "
              "the functions with the most own time (any library):", "",
              "| function | calls | cumulative | own |", "|---|---|---|---|"]
        for r in p.get("by_cumulative", [])[:8]:
            L.append(f"| `{r['function']}` | {r['calls']:,} | {r['cumulative_s']:.2f} s | {r['own_s']:.2f} s |")
        L.append("| *by own time:* | | | |")
        for r in p.get("by_own_time", [])[:4]:
            L.append(f"| `{r['function']}` | {r['calls']:,} | {r['cumulative_s']:.2f} s | {r['own_s']:.2f} s |")
        L.append("")
    return L


def _scaling(sc):
    rows = sc["rows"]
    L = ["## 2. Seconds per case against parameter count", "",
         f"One case per size (tanh hidden, {sc['classes']}-class softmax cross-entropy, batch {sc['batch']}), one "
         "thread. bpcheck: the reference through bpcheck's adapter + `bpcheck.judge.judge.judge` (certified truth, "
         "bounds, comparison, classes), median of 5 repeats (2 at 10^6). gradcheck: `torch.autograd.gradcheck` defaults, "
         "float64, on a `torch.autograd.Function` (forward = the reference's loss, backward = its gradients); "
         f"beyond {sc['cap_s']:.0f} s it is extrapolated from timed gradcheck-style central differences "
         f"(eps {sc['eps']:g}) on random parameters (marked *). {_load(sc)}.", "",
         "| network | parameters | bpcheck float32 | bpcheck float64 | gradcheck float64 | "
         "gradcheck ÷ bpcheck (f32 / f64) |", "|---|---|---|---|---|---|"]
    for r in rows:
        g = r["gradcheck_float64"]
        L.append(f"| {r['arch']} | {r['params']:,} | {seconds(r['bpcheck_float32']['median_s'])} | "
                 f"{seconds(r['bpcheck_float64']['median_s'])} | {seconds(g['seconds'])}{' *' if g['extrapolated'] else ''} | "
                 f"{fmt(r['ratio_float32'])}× / {fmt(r['ratio_float64'])}× |")
    cal = [r["gradcheck_float64"].get("estimate_over_measured") for r in rows]
    cal = [c for c in cal if c]
    if cal:
        L += ["", f"Where gradcheck ran in full, the extrapolation predicted {min(cal):.2f}–{max(cal):.2f} of its "
                  "real time: the extrapolated values are underestimates of gradcheck, so the ratios marked * are "
                  "conservative."]
    return L + [""]


def _forward_backward(fb):
    L = ["## 3. The reference's forward + backward", ""]
    first = next(iter(fb["modes"].values()))
    L += [f"{first['arch']}, batch {first['batch']}, {first['activation']} hidden, softmax cross-entropy; loss and "
          "gradients of every parameter and of the input. reference: `reference.network.backprop`; torch: the same "
          "MLP with `torch.nn.functional` and autograd; jax: `jit(value_and_grad)` compiled once, "
          "`block_until_ready`. The GEMM and the three are timed in turn, round after round; medians over "
          f"{first['rows'][next(iter(first['rows']))]['impl']['reference']['repeats']} rounds. \"of GEMM\": the "
          "implementation's matrix-product FLOP rate (3 products per layer) over NumPy's (128×784)@(784×256) rate "
          "in the same dtype and threads. One core: the process confined to one CPU, every library on one "
          "thread; default: each library's own thread count (2 here), which collapses for OpenBLAS and "
          f"torch's OpenMP pool whenever another process holds a core. {_load(fb)}.", "",
          "| threads | dtype | NumPy GEMM | reference | torch | jax | reference ÷ torch | reference ÷ jax |",
          "|---|---|---|---|---|---|---|---|"]
    for mode, res in fb["modes"].items():
        label = "one core" if mode == "one_core" else "default"
        for dtype, row in res["rows"].items():
            cells = [f"{row['impl'][k]['ms']:.2f} ms ({row['impl'][k]['fraction_of_gemm']:.0%} of GEMM)"
                     for k in ("reference", "torch", "jax")]
            L.append(f"| {label} | {dtype} | {row['gemm']['gflops']:.1f} GFLOP/s | " + " | ".join(cells)
                     + f" | {row['reference_over_torch']:.2f} | {row['reference_over_jax']:.2f} |")
    head = fb["modes"].get("one_core") or first
    row = head["rows"].get("float32") or next(iter(head["rows"].values()))
    ops = row["breakdown"]["ops_ms"]
    total = row["breakdown"]["total_ms"]
    top = ", ".join(f"{k} {v / total:.0%}" for k, v in list(ops.items())[:5])
    L += ["", f"Where the reference's time goes ({'one core' if 'one_core' in fb['modes'] else 'default threads'}, "
              f"float32, each operation timed alone): {top}. jax above 100% of the GEMM rate: XLA's own matrix "
              "products use the CPU's wider vector units, NumPy's OpenBLAS kernels (named above) may not."]
    return L + [""]


def _mutants(mu):
    rows = mu["rows"]
    L = ["## 4. Time to a caught and shrunk mutant", "",
         f"`run_validate` at its default options ({_cases(rows)} cases, one job, target isolated, shrinking on) on "
         f"`examples/buggy_mlp.py` and every `tests/meta/zoo/` member expected to fail ({mu['total']} in all), one "
         "after another in one process. First failing case: seconds until the first record with a failing row "
         "came back; shrunk: seconds until the shrunk case's diagnosis existed (the whole run, then "
         f"search, shrink, diagnosis, repro); diagnose: `verdict['timing']`. {_load(mu)}.", "",
         "| | median | worst |", "|---|---|---|"]
    for key, label in (("first_fail_s", "seconds to the first failing case"),
                       ("diagnose_s", "seconds to shrink and diagnose"),
                       ("shrunk_s", "seconds to the shrunk diagnosis (from the start)"),
                       ("first_fail_plus_diagnose_s", "first failing case + shrink and diagnose"),
                       ("shrunk_params", "parameters of the shrunk case")):
        s = mu[key]
        L.append(f"| {label} | {fmt(s['median'])} | {fmt(s['worst'])} |")
    missed = [r["name"] for r in rows if not r["caught"]]
    off = [f"{r['name']} ({r['shrunk']['tensor']}, expected {r['expected_first_wrong']})" for r in rows
           if r.get("shrunk") and r["shrunk"]["tensor"] != r["expected_first_wrong"]]
    L += ["", f"Caught {mu['caught']} of {mu['total']}"
          + (f"; not caught at the default options: {', '.join(missed)}" if missed else "")
          + (f". Shrunk diagnosis names another first wrong tensor than the member's EXPECTED: {', '.join(off)}"
             if off else "") + ". Per mutant: `results.json`."]
    return L + [""]


def _cases(rows):
    counts = sorted({r["cases"] for r in rows if r.get("cases")})
    return "–" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _memory(mem):
    L = ["## 5. Peak memory", "", "`ru_maxrss` (`resource.getrusage`) of each section-1 process; its whole process "
         "tree (workers, isolated targets) sampled from /proc every 0.1 s, because a child's `ru_maxrss` on Linux "
         "starts at its parent's peak.", "",
         "| run | process (ru_maxrss) | process tree, peak | largest worker, peak |", "|---|---|---|---|"]
    for way, r in mem["rows"].items():
        mb = lambda v: "–" if v is None else f"{fmt(v)} MB"   # noqa: E731
        L.append(f"| {SHORT[way]} | {mb(r['process_maxrss_mb'])} | {mb(r.get('peak_tree_mb'))} | "
                 f"{mb(r.get('peak_largest_descendant_mb'))} |")
    return L + [""]
