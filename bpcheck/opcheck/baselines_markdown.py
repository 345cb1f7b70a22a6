"""The op baselines' summary and Markdown: which catches are clean, the per-tool totals, the tables.

``mark_clean`` decides whether a tool's catch of a mutant is made where the same tool passes the correct
implementations (shared with the graph baselines); ``summarise`` totals a run's rows per tool and
dtype; ``markdown`` writes ``OUT/ops_baselines.md`` from that summary.
"""
from pathlib import Path

from bpcheck.opcheck.report import LAYERS, ROOT

__all__ = ["mark_clean", "summarise", "markdown", "rel_path", "TOOLS", "DTYPES", "REGENERATE"]

TOOLS = ("bpcheck", "gradcheck", "check_grads")
DTYPES = ("float64", "float32")
REGENERATE = "python -m bpcheck.opcheck.baselines --out reports --seed {seed}"


def rel_path(path):
    """``path`` relative to the repository (its file name when outside it)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def _columns(dtypes, tools):
    """(key, tool, setting label, dtype) of each summary row, in table order."""
    cols = []
    if "bpcheck" in tools:
        cols.append(("bpcheck check_op", "bpcheck", "check_op", "+".join(dtypes)))
    for tool in tools:
        for dtype in dtypes:
            cols.append((f"{tool} {dtype}", tool, "same_cases", dtype))
    return cols


def _result(row, tool, setting, dtype):
    return next(r for r in row["results"] if r["tool"] == tool and r["setting"] == setting and r["dtype"] == dtype)


def mark_clean(mutants, correct, columns):
    """Set ``cleanly`` on each mutant's results: flagged where the same tool passes the correct code. On
    the shared cases that is per case (the cases of an op, dtype and seed are the same for every
    implementation): a case the mutant fails on which every correct implementation of the op passes
    under the same tool, or one on which the mutant raises and no correct implementation does; for
    ``check_op`` (its own cases): flagged, and no correct implementation of the op flagged. None when
    the run has no correct implementation of the op."""
    for _, tool, setting, dtype in columns:
        for r in mutants:
            res = _result(r, tool, setting, dtype)
            controls = [_result(c, tool, setting, dtype) for c in correct if c["op"] == r["op"]]
            if not controls:
                res["cleanly"] = None
            elif setting == "check_op":
                res["cleanly"] = res["flagged"] and not any(c["flagged"] for c in controls)
            else:
                res["cleanly"] = any((v == "f" and all(c["verdicts"][k] == "p" for c in controls))
                                     or (v == "e" and all(c["verdicts"][k] != "e" for c in controls))
                                     for k, v in enumerate(res["verdicts"]))


def summarise(rows, *, seed, dtypes, tools, selection, seconds):
    """Per tool x dtype: mutants caught, and caught cleanly (``mark_clean``), the same for the edge-only
    mutants, mutants caught only by raising, false alarms (correct (implementation, op) pairs flagged)
    and their failing cases, seconds."""
    mutants = [r for r in rows if r["kind"] == "mutant"]
    correct = [r for r in rows if r["kind"] == "correct"]
    columns = _columns(dtypes, tools)
    mark_clean(mutants, correct, columns)
    table = []
    for key, tool, setting, dtype in columns:
        res = lambda r: _result(r, tool, setting, dtype)  # noqa: E731
        caught = [r for r in mutants if res(r)["flagged"]]
        clean = [r for r in caught if res(r)["cleanly"]]
        alarms = [r for r in correct if res(r)["flagged"]]
        table.append({
            "key": key, "tool": tool, "setting": setting, "dtype": dtype,
            "cases": sum(res(r)["cases"] for r in rows),
            "mutants": len(mutants), "mutants_caught": len(caught), "mutants_caught_cleanly": len(clean),
            "mutants_with_controls": sum(res(r)["cleanly"] is not None for r in mutants),
            "edge_only": sum(r["edge_only"] for r in mutants),
            "edge_only_caught": sum(r["edge_only"] for r in caught),
            "edge_only_caught_cleanly": sum(r["edge_only"] for r in clean),
            "caught_only_by_raising": sum(1 for r in caught if setting == "same_cases" and res(r)["failing"] == 0),
            "correct_pairs": len(correct), "false_alarms": len(alarms),
            "correct_cases": sum(res(r)["cases"] for r in correct),
            "false_alarm_cases": sum(res(r)["failing"] + res(r).get("raised", 0) if setting == "same_cases"
                                     else res(r)["failing"] for r in correct),
            "false_alarm_families": sorted({f for r in alarms for f in res(r).get("flagged_families", [])}),
            "missed": [r["name"] for r in mutants if not res(r)["flagged"]],
            "not_cleanly": [r["name"] for r in caught if res(r)["cleanly"] is False],
            "seconds": round(sum(res(r)["seconds"] for r in rows), 1)})
    missed_by_all = [r["name"] for r in mutants
                     if not any(_result(r, tool, setting, dtype)["flagged"] for _, tool, setting, dtype in columns)]
    others = [c for c in columns if c[1] != "bpcheck"]
    not_cleanly_by_others = [r["name"] for r in mutants
                             if others and not any(_result(r, *c[1:])["cleanly"] for c in others)]
    return {"seed": seed, "dtypes": list(dtypes), "tools": list(tools), "selection": selection,
            "mutants": len(mutants), "correct_pairs": len(correct), "seconds": round(seconds, 1),
            "summary": table, "missed_by_every_tool": missed_by_all,
            "not_caught_cleanly_by_gradcheck_or_check_grads": not_cleanly_by_others, "implementations": rows}


# ---- the report -----------------------------------------------------------------------------------

def _cell(row, result):
    if result["setting"] == "check_op":
        if result["verdict"] == "fail":
            if row["kind"] == "correct":
                return f"**false alarm** ({result['failing']}/{result['cases']})"
            word = "noise" if result.get("cleanly") is False else "caught"
            return f"{word} ({result['failing']}/{result['cases']}; first wrong {result['first_wrong']})"
        if result["verdict"] == "pass":
            return f"**missed** (0/{result['cases']})" if row["kind"] == "mutant" else f"pass ({result['cases']})"
        return result["verdict"]
    flagged = result["failing"] + result["raised"]
    detail = f"{flagged}/{result['cases']}"
    if result["raised"]:
        detail += f", {result['raised']} raised"
    if row["kind"] == "mutant":
        if not result["flagged"]:
            return f"**missed** (0/{result['cases']})"
        return f"{'noise' if result.get('cleanly') is False else 'caught'} ({detail})"
    if not result["flagged"]:
        return f"pass ({result['cases']})"
    return f"**false alarm** ({detail}: {', '.join(result['flagged_families'])})"


def _names(names, expected=None):
    if not names:
        return "none"
    return ", ".join(f"`{n}`" + (f" ({expected[n]['tensor']})" if expected else "") for n in names)


def markdown(summary):
    s = summary
    tools, dtypes, sel = s["tools"], s["dtypes"], s["selection"]
    lines = ["# bpcheck, gradcheck and check_grads on the op zoo and on correct layers", "",
             f"Regenerate: `{REGENERATE.format(seed=s['seed'])}`", ""]
    if sel["members"] is not None or sel["ops"] is not None or list(sel["correct"]) != list(LAYERS) \
            or list(dtypes) != list(DTYPES) or list(tools) != list(TOOLS):
        pick = lambda v: "all" if v is None else (", ".join(v) or "none")  # noqa: E731
        lines += [f"A subset: members {pick(sel['members'])}; ops {pick(sel['ops'])}; correct implementations "
                  f"{pick([rel_path(LAYERS[w]) for w in sel['correct']])}; dtypes {pick(dtypes)}; tools {pick(tools)}.", ""]
    lines += [
        f"{s['mutants']} mutants (`tests/meta/op_zoo`: CS231n-style layers with one realistic slip each) and "
        f"{s['correct_pairs']} correct (implementation, op) pairs ("
        + (" and ".join(f"`{rel_path(LAYERS[w])}`" for w in sel["correct"]) or "none")
        + f", every op with a CS231n signature), seed {s['seed']}; {s['seconds']:.0f} s for the whole run "
        "(on a shared CPU: the seconds are indicative).", "",
        "- **bpcheck `check_op`**: `check_op(op, layers=module, extended=True, seed=seed)`, its default covering "
        "set -- every edge family of the op's record, 4 cases each, in both dtypes -- judged against the "
        "certified truth with a rounding bound.",
        "- **bpcheck, gradcheck, check_grads per dtype**: the same cases for the three tools, "
        "`cases(op, (dtype,), per_family=1, seed=seed)`: one case of every family of the op (ties, large means, "
        "repeated indices, padding borders, ...) in that dtype. bpcheck: `judge_case` on each case. gradcheck: "
        "`torch.autograd.gradcheck(fn, inputs, raise_exception=False)` at its defaults (eps 1e-6, atol 1e-5, "
        "rtol 1e-3; documented for float64, run in float32 at the same defaults to record what happens) on a "
        "`torch.autograd.Function` whose forward calls the NumPy forward and keeps its cache and whose backward "
        "calls the NumPy backward with the cotangent. check_grads: `jax.test_util.check_grads(f, args, order=1, "
        "modes=['rev'])` at its defaults (one random direction and one random cotangent; eps 1e-4, tolerance "
        "1e-5 in float64, 2e-3 in float32) on a `jax.custom_vjp` whose primal and VJP call the NumPy code "
        "through `jax.pure_callback`. Labels, indices and hyper-parameters are closed over, not differentiated.",
        "- A tool *catches* a mutant when a case fails or the layer raises under it (a shape error counts); on "
        "a correct implementation either is a *false alarm*. A catch is *clean* when the mutant fails on a case "
        "where the same tool passes every correct implementation of the op, or raises on a case where none of "
        "them raises (for `check_op`, which draws its own cases: when it passes every correct implementation "
        "of the op); a catch that is not clean is "
        "*noise* -- the tool fails the correct code there too. *Edge-only*: mutants whose `shows_when` is not "
        "\"always\" (nor \"always\" qualified, such as \"always in training mode\").", "",
        "| tool | dtype | cases | mutants caught | cleanly | edge-only caught | cleanly | only by raising | "
        "false alarms | failing cases on correct code | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in s["summary"]:
        label = "bpcheck `check_op` (default)" if t["setting"] == "check_op" else t["tool"]
        dtype = "both" if t["setting"] == "check_op" else t["dtype"]
        raising = "—" if t["setting"] == "check_op" else str(t["caught_only_by_raising"])
        lines.append(f"| {label} | {dtype} | {t['cases']} | {t['mutants_caught']} of {t['mutants']} | "
                     f"{t['mutants_caught_cleanly']} | {t['edge_only_caught']} of {t['edge_only']} | "
                     f"{t['edge_only_caught_cleanly']} | {raising} | {t['false_alarms']} of {t['correct_pairs']} | "
                     f"{t['false_alarm_cases']} of {t['correct_cases']} | {t['seconds']} |")
    expected = {r["name"]: r for r in s["implementations"] if r["kind"] == "mutant"}
    lines += ["", "## Missed, noise and false alarms", "",
              f"- Missed by every tool in every dtype: {_names(s['missed_by_every_tool'])}.",
              "- Caught cleanly by neither gradcheck nor check_grads, in either dtype: "
              f"{_names(s['not_caught_cleanly_by_gradcheck_or_check_grads'], expected)}."]
    for t in s["summary"]:
        label = "bpcheck `check_op`" if t["setting"] == "check_op" else f"{t['tool']} {t['dtype']}"
        text = f"- {label}: missed {_names(t['missed'], expected)}"
        if len(t["not_cleanly"]) > 10:
            clean = [n for n in expected if n not in t["missed"] and n not in t["not_cleanly"]]
            text += (f"; noise only on {len(t['not_cleanly'])} of its {t['mutants_caught']} catches (clean: "
                     f"{_names(clean)})")
        elif t["not_cleanly"]:
            text += f"; noise only on {_names(t['not_cleanly'])}"
        if t["false_alarms"]:
            text += f"; false alarms on {t['false_alarms']} pairs"
            if t["false_alarm_families"]:
                text += f" (families {', '.join(t['false_alarm_families'])})"
        lines.append(text + ".")
    lines += ["", "The tools other than bpcheck compare the backward with finite differences of the layer's own "
              "forward: a slip in the forward whose backward follows it agrees with them; an absolute tolerance "
              "(gradcheck's atol 1e-5) passes a wrong gradient whose true entries are smaller than it (confident "
              "logits); check_grads calls the backward once per case, so a slip that shows on a later call goes "
              "unseen; at a tie or a nearly constant row a finite difference straddles a kink or a steep "
              "curve, and in float32 gradcheck's step of 1e-6 is a few units in the last place."]
    cols = [c for c in _columns(dtypes, tools) if c[1] != "bpcheck" or c[2] == "check_op"]
    header = ["implementation", "op", "expected"] + [("bpcheck" if c[2] == "check_op" else c[0]) for c in cols]
    lines += ["", "## Per implementation", "",
              "Cells: the verdict, then the failing (or raising) cases of the cases run; for bpcheck (its default "
              "`check_op` run), the first wrong tensor of its shrunk case; for a false alarm, the families of the "
              "failing cases. *noise*: flagged only where the same tool fails the correct code too. *expected*: the "
              "member's first wrong tensor and where its slip shows (its `EXPECTED`). bpcheck's verdicts on the "
              "tools' shared cases are in the JSON and in the lists above.", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in s["implementations"]:
        exp = f"{r['tensor']}: {r['shows_when']}" if r["kind"] == "mutant" else "correct"
        cells = [_cell(r, _result(r, tool, setting, dtype)) for _, tool, setting, dtype in cols]
        lines.append(f"| {r['name']} | {r['op']} | {exp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
