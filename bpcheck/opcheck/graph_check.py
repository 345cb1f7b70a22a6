"""Check a whole network: every leaf gradient (and each node's delta, when given) against the certified truth
of its graph, and the first wrong node named.

A candidate for an architecture (``bpcheck.ops.architectures``) is a Python callable

    fn(values, constants, hyper, dout) -> (out, grads) or (out, grads, deltas)

``values``: {leaf: array} (inputs and parameters, in the case's dtype); ``constants``: {name: array};
``hyper``: {node: {hyper-parameter: value}}; ``dout``: the cotangent of the output (a scalar for a
loss). ``out`` is the output, ``grads`` {leaf: dC/dleaf}, and ``deltas`` (optional) {node: dC/d(node's
output)}, the generalised deltas of the backward pass. Arrays of any float type (NumPy, torch, JAX).

Each tensor is judged by the op rule (``bpcheck.opcheck.judge.compare_tensor``: ||g - g*|| <= SAFETY u ||s||
+ floor with s from the rounding model of the whole graph). The first wrong node: the backward pass
runs in reverse node order, so the wrong tensor nearest the output is where the error entered --
with deltas, the first node (from the output back) whose delta is wrong points at its consumers'
backward; without, the wrong leaf gradient nearest the output points at the node that reads it. At a
value read by several nodes the truth knows each consumer's part: a gradient equal to some of the
parts but not their sum says *assigned with = instead of accumulated with +=*. The culprit node's
record then gives its slips as hints. A failing case is shrunk through the architecture's smaller
sizes (same seed, family and dtype) to the smallest that still fails.
"""
import itertools
import time
from dataclasses import dataclass, field, replace

import numpy as np

from bpcheck import ops
from bpcheck.ops import architectures
from bpcheck.opcheck.candidates import CandidateFatal, Unsupported
from bpcheck.ops.cases import OpCase
from bpcheck.opcheck.check import diagnosis
from bpcheck.ops.graph import bound, truth
from bpcheck.opcheck.graph_candidates import GraphCandidate, python_candidate
from bpcheck.ops.graph_cases import draw_graph_case
from bpcheck.opcheck.graph_local import judge_locally
from bpcheck.opcheck.judge import compare_tensor, largest_count, scale_hint, slip_hints

__all__ = ["check_graph", "assert_graph", "GraphReport", "judge_graph_case", "locate"]


# --- judging one case --------------------------------------------------------------------------------

def _order(graph):
    """Tensors in backward order: out, then each node's delta and each leaf's gradient as the reverse
    pass completes them (a leaf once every consumer is done: after its earliest one in node order)."""
    last = {leaf: min(i for i, n in enumerate(graph.nodes) if leaf in n.inputs.values()) for leaf in graph.leaves}
    order = ["out"]
    for i in range(len(graph.nodes) - 1, -1, -1):
        order.append(f"delta {graph.nodes[i].name}")
        order.extend(f"d{leaf}" for leaf in graph.leaves if last[leaf] == i)
    return order


def judge_graph_case(case, candidate):
    """(rows, the culprit dict or None, class "pass" | "bug"). Rows: the whole graph's tensors in
    backward order (each row "scope": "graph"), then, when the candidate gives every node's output
    and delta, each node judged at the candidate's own values (``bpcheck.opcheck.graph_local``, "scope":
    "node"). The culprit comes from the node judgement when it fails, else from the graph's."""
    t = truth(case.graph, case.values, case.constants, case.cotangent)
    s = bound(case.graph, case.values, case.constants, case.cotangent, case.dtype)
    try:
        result = candidate.run(case)
    except CandidateFatal:                                  # the program cannot run at all: stop the run
        raise
    except Unsupported as exc:                              # a documented refusal: declined, not judged
        return [{"tensor": "call", "status": "unsupported", "message": str(exc)}], None, "unsupported"
    except Exception as exc:                                # the candidate's fault is a verdict
        return [{"tensor": "call", "status": "bug", "message": f"raised {type(exc).__name__}: {exc}"}], None, "bug"
    got = {"out": result["out"], **{f"d{k}": g for k, g in result["grads"].items()},
           **{f"delta {k}": d for k, d in result["deltas"].items()}}
    rows = []
    for name in _order(case.graph):
        if name.startswith("delta ") and (name not in got or name in t["uncertified"]):
            continue                                          # optional, or no float holds its exact value
        rows.append(compare_tensor(name, got.get(name), t[name], s[name], case.dtype))
    unknown = sorted(set(result["grads"]) - set(case.graph.leaves))
    if unknown:
        rows.append({"tensor": "grads", "status": "bug", "message": f"gradients of unknown leaves {unknown}"})
    for name in result["mutated"]:
        rows.append({"tensor": name, "status": "bug", "message": f"overwrote its input {name}"})
    if any(r["status"] == "bug" for r in rows):
        rows = _conventions(case, rows, got, s)
    for row in rows:
        row["scope"] = "graph"
    local, parts = judge_locally(case, result)
    for row in local:
        row["scope"] = "node"
    culprit = locate_node(case, local, result, parts) or locate(case, rows, got, t, s)
    rows = rows + local
    statuses = {r["status"] for r in rows}
    cls = "bug" if "bug" in statuses else next((c for c in ("convention", "tie", "kink") if c in statuses), "pass")
    return rows, culprit, cls


def _conventions(case, rows, got, bound_s):
    """``rows`` again against the truth with one node following one of its record's documented
    conventions (JAX's uniform row where torch's fully masked attention row is 0), when that makes every
    tensor pass: the rows that failed become class "convention" with the convention's note. The tolerance
    stays the definition's."""
    for node in case.graph.nodes:
        record = ops.get(node.op)
        for conv in record.conventions:
            variant = replace(record, forward=conv.forward, vjp=conv.vjp, conventions=())
            try:
                t = truth(case.graph, case.values, case.constants, case.cotangent, swap={node.name: variant})
            except ArithmeticError:
                continue
            again = [compare_tensor(r["tensor"], got.get(r["tensor"]), t[r["tensor"]], bound_s[r["tensor"]], case.dtype)
                     if "error" in r else r for r in rows]
            if all(r["status"] != "bug" for r in again):
                for new, old in zip(again, rows):
                    if old["status"] == "bug":
                        new.update(status="convention", message=f"node {node.name}: {conv.note}")
                return again
    return rows


def locate(case, rows, got, t, s):
    """The first wrong node: {"node", "tensor", "words", "hints"} or None if every tensor passes."""
    wrong = next((r for r in rows if r["status"] == "bug"), None)
    if wrong is None:
        return None
    name = wrong["tensor"]
    if name == "out":
        return {"node": None, "tensor": name, "words": "the forward output is wrong", "hints": []}
    if "error" not in wrong:                                  # missing, a wrong shape, a crash, an overwrite
        leaf = name[1:] if name[1:] in case.graph.leaves else None
        words = (f"{name} {wrong['message']}: grads needs an entry of {leaf}'s shape" if leaf and wrong["message"] ==
                 "missing" else f"{name}: {wrong['message']}")
        return {"node": leaf, "tensor": name, "words": words, "hints": []}
    value = name[len("delta "):] if name.startswith("delta ") else name[1:]
    graph = case.graph
    if value == graph.output:
        return {"node": value, "tensor": name, "words": "the output's delta is not the cotangent sent", "hints": []}
    consumers = graph.consumers(value)
    g = got[name]
    parts = t["parts"][value]
    if len(consumers) == 1:
        node, slot = consumers[0]
        hints = _node_hints(case, t, node, slot, g) + _ignored_cotangent(case, wrong) + _scale_hint(case, wrong)
        return {"node": node, "tensor": name, "hints": hints,
                "words": f"node {node} ({graph.node(node).op}): its backward gives a wrong d{slot} "
                         f"(its own delta is right{'' if f'delta {node}' in got else ' as far as the leaves show'})"}
    fan = _fan_out(g, parts, s["parts"][value], case.dtype)
    if fan is not None:
        return _assigned(value, name, list(parts), fan)
    for node, slot in consumers:                  # one consumer wrong, the others right: a slip of its record?
        implied = g - sum(p for key, p in parts.items() if key != f"{node}.{slot}")
        hints = _node_hints(case, t, node, slot, implied)
        if hints:
            return {"node": node, "tensor": name, "hints": hints,
                    "words": f"node {node} ({graph.node(node).op}): its backward gives a wrong d{slot} "
                             f"({value} also feeds {', '.join(c for c, _ in consumers if c != node)})"}
    return {"node": None, "tensor": name, "hints": _scale_hint(case, wrong),
            "words": f"{value} feeds {', '.join(c for c, _ in consumers)}; the sum of their parts is wrong "
                     f"and matches no subset of them: one of their backwards is wrong"}


def _scale_hint(case, wrong):
    """``scale_hint`` with the counts a sum in this case could run over."""
    return scale_hint(wrong, largest_count(case.values, case.constants, case.cotangent))


def locate_node(case, rows, result, parts):
    """The culprit from the node judgement: the first failing row's node, or None if all pass."""
    wrong = next((r for r in rows if r["status"] == "bug"), None)
    if wrong is None:
        return None
    if "value" not in wrong:                                   # one node's own output or gradient
        node = case.graph.node(wrong["node"])
        what = "output" if wrong["tensor"].endswith(": out") else wrong["tensor"].split(": ")[1]
        hints = wrong.get("hints", []) + (_ignored_cotangent(case, wrong) if node.name == case.graph.output else [])
        return {"node": node.name, "tensor": wrong["tensor"], "hints": hints,
                "words": f"node {node.name} ({node.op}) computes a wrong {what} from the values it was given"}
    value = wrong["value"]
    g = _given(result, value, case.graph)
    exact = {k: p for k, (p, _) in parts[value].items()}
    bounds = {k: b for k, (_, b) in parts[value].items()}
    fan = _fan_out(g, exact, bounds, case.dtype) if g is not None else None
    if fan is not None:
        return _assigned(value, wrong["tensor"], list(exact), fan)
    return {"node": value, "tensor": wrong["tensor"], "hints": _scale_hint(case, wrong),
            "words": f"{value} feeds {', '.join(k.split('.')[0] for k in exact)}; each node's part is exact at "
                     f"your values, their sum is not your gradient"}


def _assigned(value, tensor, keys, fan):
    """The culprit when ``value``'s gradient is the parts ``fan`` of its readers' parts ``keys`` ("node.input")
    alone: the others were overwritten, not added."""
    def nodes(ks):
        return ", ".join(k.split(".")[0] for k in ks)
    words = (f"{value} feeds {len(keys)} nodes ({nodes(keys)}); its gradient equals the part from {nodes(fan)} "
             f"alone, the part from {nodes(k for k in keys if k not in fan)} is missing: assigned with = instead "
             f"of accumulated with +=")
    return {"node": value, "tensor": tensor, "words": words, "hints": [words]}


def _given(result, value, graph):
    return result["grads"].get(value) if value in graph.leaves else result["deltas"].get(value)


def _ignored_cotangent(case, row):
    """A scalar output's cotangent dout left out: the gradient is the truth divided by dout."""
    dout = float(np.asarray(case.cotangent, dtype=np.float64)) if np.size(case.cotangent) == 1 else None
    scale = row.get("scale", np.nan)
    if dout is None or dout == 1 or not np.isfinite(scale) or abs(row.get("cosine", 0.0)) < 0.999:
        return []
    if abs(scale * dout - 1) < 1e-3:
        return [f"the gradient is the one for dout = 1, not for the dout sent ({dout:.4g}): "
                "the output's cotangent is ignored"]
    return []


def _fan_out(g, parts, bounds, dtype):
    """The consumers whose true parts alone sum to ``g`` (a strict, non-empty subset), or None."""
    keys = list(parts)
    for k in range(1, len(keys)):
        for subset in itertools.combinations(keys, k):
            partial = sum(parts[key] for key in subset)
            s = sum(bounds[key] for key in keys)
            if compare_tensor("part", g, partial, s, dtype)["status"] == "pass":
                return list(subset)
    return None


def _node_hints(case, t, node, slot, g):
    """The culprit record's slips matching ``g`` as its part for ``slot``, on the node's true inputs."""
    n = case.graph.node(node)
    record = ops.get(n.op)
    env = {**case.values, **t["outputs"]}
    inputs = {k: np.asarray(env[v], dtype=np.float64) for k, v in n.inputs.items() if k in record.inputs}
    constants = {k: case.constants[v] for k, v in n.inputs.items() if k in record.constants}
    op_case = OpCase(n.op, case.dtype, case.family, case.seed, inputs, constants, dict(n.hyper),
                     t[f"delta {node}"])
    return slip_hints(record, op_case, "d" + slot, g, t["parts"][n.inputs[slot]][f"{node}.{slot}"])


# --- the whole check ---------------------------------------------------------------------------------

@dataclass
class GraphReport:
    arch: str
    candidate: str
    cases: int = 0
    failures: int = 0
    coverage: dict = field(default_factory=dict)
    first: dict = None          # the shrunk failing case: case, rows, culprit
    seconds: float = 0.0
    declined: list = field(default_factory=list)      # why cases were not judged (a documented refusal)
    conventions: int = 0                              # cases right under a node's documented convention

    @property
    def verdict(self):
        return "fail" if self.failures else ("pass" if self.cases else "none")

    def summary(self):
        head = (f"bpcheck graph {self.arch}: {self.verdict.upper()} -- {self.candidate}: {self.cases} cases, "
                f"{self.failures} failing, in {self.seconds:.1f} s")
        if self.conventions:
            head += f"\n  {self.conventions} cases right under a documented convention (passing, with its note)"
        if self.declined:
            head += f"\n  {len(self.declined)} cases declined: " + "; ".join(sorted(set(self.declined)))
        if self.first is None:
            return head
        culprit, rows = self.first["culprit"], self.first["rows"]
        wrong = [r for r in rows if r["status"] == "bug"]
        if culprit:                                  # the row that names the culprit first
            wrong.sort(key=lambda r: r["tensor"] != culprit["tensor"])
        lines = [head, diagnosis({**self.first, "rows": wrong[:1]})]
        if len(wrong) > 1:
            lines.append(f"  and {len(wrong) - 1} more wrong tensors: " + ", ".join(
                r["tensor"] + (" (whole graph)" if r.get("scope") == "graph" and culprit
                               and culprit["tensor"] != r["tensor"] and wrong[0].get("scope") == "node" else "")
                for r in wrong[1:]))
        if culprit:
            where = culprit["node"] if culprit["node"] is not None else "not pinned to one node"
            lines.append(f"first wrong node: {where} -- {culprit['words']}")
            lines.extend(f"  hint: {h}" for h in culprit["hints"] if h != culprit["words"])
        return "\n".join(lines)


def check_graph(arch, fn, *, name=None, seed=0, per_family=2, dtypes=("float32", "float64")):
    """Judge ``fn`` (a Python callable as in the module docstring, or a ``GraphCandidate``) on every family
    of ``arch`` x ``dtypes`` x ``per_family`` cases; shrink the first failure through the smaller sizes.
    Returns a ``GraphReport``."""
    arch = architectures.get(arch) if isinstance(arch, str) else arch
    fn = fn if isinstance(fn, GraphCandidate) else python_candidate(fn, name)
    report = GraphReport(arch.name, fn.name)
    start = time.perf_counter()
    failing = None
    for family, dtype in itertools.product(arch.families, dtypes):
        report.coverage[(family, dtype)] = 0
        for k in range(per_family):
            case = draw_graph_case(arch, family, dtype, seed * 1000 + k)
            rows, culprit, cls = judge_graph_case(case, fn)
            if cls == "unsupported":
                report.declined.append(rows[0]["message"])
                continue
            report.cases += 1
            report.coverage[(family, dtype)] += 1
            report.conventions += cls == "convention"
            if cls == "bug":
                report.failures += 1
                if failing is None:
                    failing = {"case": case, "rows": rows, "culprit": culprit}
    if failing is not None:
        report.first = _shrink(arch, fn, failing)
    report.seconds = time.perf_counter() - start
    return report


def _shrink(arch, fn, failing):
    case = failing["case"]
    for size in arch.sizes:
        if size == case.size:
            break
        smaller = draw_graph_case(arch, case.family, case.dtype, case.seed, size)
        rows, culprit, cls = judge_graph_case(smaller, fn)
        if cls == "bug":
            return {"case": smaller, "rows": rows, "culprit": culprit}
    return failing


def assert_graph(arch, fn, **kwargs):
    """``check_graph``, raising AssertionError with the diagnosis unless the verdict is pass."""
    report = check_graph(arch, fn, **kwargs)
    if report.verdict != "pass":
        raise AssertionError(report.summary())
    return report
