"""Check a whole network: every leaf gradient (and each node's delta, when given) against the certified truth
of its graph, and the first wrong node named.

A candidate for an architecture (``bpcheck.ops.architectures``) is a Python callable

    fn(values, constants, hyper, dout) -> (out, grads) or (out, grads, deltas)

``values``: {leaf: array} (inputs and parameters, in the case's dtype); ``constants``: {name: array};
``hyper``: {node: {hyper-parameter: value}}; ``dout``: the cotangent of the output (a scalar for a
loss). ``out`` is the output, ``grads`` {leaf: dC/dleaf}, and ``deltas`` (optional) {node: dC/d(node's
output)}, the generalised deltas of the backward pass. Arrays of any float type (NumPy, torch, JAX).

Each tensor is judged by the op rule (``bpcheck.ops.judge.compare_tensor``: ||g - g*|| <= SAFETY u ||s||
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
from dataclasses import dataclass, field

import numpy as np

from bpcheck import ops
from bpcheck.ops import architectures
from bpcheck.ops.algebra import Plain
from bpcheck.ops.cases import OpCase, _cotangent, _rng
from bpcheck.ops.check import diagnosis
from bpcheck.ops.graph import bound, truth, walk
from bpcheck.ops.judge import compare_tensor, scale_hint, slip_hints

__all__ = ["GraphCase", "draw_graph_case", "check_graph", "assert_graph", "GraphReport", "judge_graph_case",
           "record_candidate", "framework_candidate",
           "python_candidate", "GraphCandidate"]


@dataclass
class GraphCase:
    arch: str
    dtype: str
    family: str
    seed: int
    size: dict
    graph: object
    values: dict
    constants: dict
    cotangent: np.ndarray

    @property
    def hyper(self):
        return {n.name: dict(n.hyper) for n in self.graph.nodes}

    def describe(self):
        dims = ", ".join(f"{k}={v}" for k, v in self.size.items())
        return f"{self.arch} {self.dtype} [{self.family}] seed {self.seed}; {dims}"


def draw_graph_case(arch, family, dtype, seed, size=None):
    """A case of ``arch`` (name or Architecture); ``size`` defaults to one of its sizes, drawn."""
    arch = architectures.get(arch) if isinstance(arch, str) else arch
    rng = _rng("graph", arch.name, family, dtype, seed)
    if size is None:
        size = arch.sizes[int(rng.integers(1, len(arch.sizes)))]
    graph = arch.graph(size)
    values, constants = arch.draw(rng, family, dtype, size)
    out = walk(graph, values, constants, 1.0, Plain())["out"]
    return GraphCase(arch.name, dtype, family, seed, dict(size), graph, values, constants,
                     _cotangent(rng, np.shape(out), dtype, family))


# --- candidates --------------------------------------------------------------------------------------

def _float64(v, what):
    if v is None:
        return None
    if hasattr(v, "detach"):
        v = v.detach().cpu().double().numpy()
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not an array of numbers ({exc})") from None


class GraphCandidate:
    """``run(case) -> {"out", "grads", "deltas", "mutated"}`` (float64 arrays); raises what the code raises."""

    def __init__(self, name, run):
        self.name, self.run = name, run


def python_candidate(fn, name=None):
    """``fn(values, constants, hyper, dout) -> (out, grads)`` or ``(out, grads, deltas)`` (or a dict with
    those keys), called on fresh copies of the case's arrays; inputs it overwrites are named."""
    def run(case):
        values = {k: v.copy() for k, v in case.values.items()}
        constants = {k: v.copy() for k, v in case.constants.items()}
        with np.errstate(all="ignore"):
            result = fn(values, constants, case.hyper, np.asarray(case.cotangent).copy())
        given = {**case.values, **case.constants}
        mutated = [k for k, v in {**values, **constants}.items() if not np.array_equal(v, given[k], equal_nan=True)]
        return {**_unpack(result), "mutated": mutated}
    return GraphCandidate(name or getattr(fn, "__name__", "candidate"), run)


def _unpack(result):
    if isinstance(result, dict):
        out, grads, deltas = result.get("out"), result.get("grads"), result.get("deltas") or {}
    elif isinstance(result, tuple) and len(result) in (2, 3):
        out, grads, deltas = result[0], result[1], (result[2] if len(result) == 3 else {}) or {}
    else:
        raise TypeError("return (out, grads) or (out, grads, deltas)")
    if not isinstance(grads, dict) or not isinstance(deltas, dict):
        raise TypeError("grads and deltas must be dicts keyed by leaf and node names")
    return {"out": _float64(out, "out"), "grads": {k: _float64(g, "d" + k) for k, g in grads.items()},
            "deltas": {k: _float64(d, f"delta {k}") for k, d in deltas.items()}}


def record_candidate(slip=None):
    """A correct candidate from the records themselves (float64, cast to the case's dtype), with
    ``slip = (node, slip name)`` swapping that node's record slip into its backward: a known-bad input."""
    def run(case):
        r = walk(case.graph, case.values, case.constants, case.cotangent, Plain(), slip=slip)

        def cast(v):
            return np.asarray(v, dtype=np.float64).astype(case.dtype).astype(np.float64)
        return {"out": cast(r["out"]), "grads": {k: cast(g) for k, g in r["grads"].items()},
                "deltas": {n.name: cast(r["cotangents"][n.name]) for n in case.graph.nodes}, "mutated": []}
    return GraphCandidate("records" + (f" with slip {slip[1]} at {slip[0]}" if slip else ""), run)


def framework_candidate(framework):
    """The whole graph built from each node's framework binding, differentiated by the framework
    (torch: ``torch.autograd.grad``; jax: ``jax.vjp``): the frameworks' own built-ins composed, the oracles."""
    def run(case):
        graph, dout = case.graph, case.cotangent
        if framework == "torch":
            import torch
            leaves = {k: torch.tensor(v, requires_grad=True) for k, v in case.values.items()}
            out = _framework_forward(graph, torch, leaves, {k: torch.tensor(v) for k, v in case.constants.items()})
            grads = torch.autograd.grad(out, list(leaves.values()), torch.tensor(dout, dtype=out.dtype))
            return {**_unpack((out, dict(zip(leaves, grads)))), "mutated": []}
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.nn  # noqa: F401
        names = list(case.values)
        c = {k: jax.numpy.asarray(v) for k, v in case.constants.items()}
        out, pullback = jax.vjp(lambda *xs: _framework_forward(graph, jax, dict(zip(names, xs)), c),
                                *[jax.numpy.asarray(case.values[k]) for k in names])
        grads = pullback(jax.numpy.asarray(dout).astype(out.dtype))
        return {**_unpack((np.asarray(out), {k: np.asarray(g) for k, g in zip(names, grads)})), "mutated": []}
    return GraphCandidate(f"{framework} built-ins", run)


def _framework_forward(graph, module, leaves, constants):
    binding = "torch" if module.__name__ == "torch" else "jax"
    env = dict(leaves)
    for n in graph.nodes:
        record = ops.get(n.op)
        a = {k: env[v] for k, v in n.inputs.items() if k in record.inputs}
        c = {k: constants[v] for k, v in n.inputs.items() if k in record.constants}
        env[n.name] = getattr(record, binding)(module, a, c, n.hyper)
    return env[graph.output]


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
    """(rows in backward order, the culprit dict or None, class "pass" | "bug" | "error")."""
    t = truth(case.graph, case.values, case.constants, case.cotangent)
    s = bound(case.graph, case.values, case.constants, case.cotangent, case.dtype)
    try:
        result = candidate.run(case)
    except Exception as exc:                                # the candidate's fault is a verdict
        return [{"tensor": "call", "status": "bug", "message": f"raised {type(exc).__name__}: {exc}"}], None, "bug"
    got = {"out": result["out"], **{f"d{k}": g for k, g in result["grads"].items()},
           **{f"delta {k}": d for k, d in result["deltas"].items()}}
    rows = []
    for name in _order(case.graph):
        if name.startswith("delta ") and name not in got:
            continue                                          # deltas are optional
        rows.append(compare_tensor(name, got.get(name), t[name], s[name], case.dtype))
    unknown = sorted(set(result["grads"]) - set(case.graph.leaves))
    if unknown:
        rows.append({"tensor": "grads", "status": "bug", "message": f"gradients of unknown leaves {unknown}"})
    for name in result["mutated"]:
        rows.append({"tensor": name, "status": "bug", "message": f"overwrote its input {name}"})
    culprit = locate(case, rows, got, t, s)
    return rows, culprit, "bug" if any(r["status"] == "bug" for r in rows) else "pass"


def locate(case, rows, got, t, s):
    """The first wrong node: {"node", "tensor", "words", "hints"} or None if every tensor passes."""
    wrong = next((r for r in rows if r["status"] == "bug"), None)
    if wrong is None:
        return None
    name = wrong["tensor"]
    if name == "out" or "error" not in wrong:
        return {"node": None, "tensor": name, "words": "the forward output is wrong" if name == "out"
                else wrong["message"], "hints": []}
    value = name[len("delta "):] if name.startswith("delta ") else name[1:]
    graph = case.graph
    if value == graph.output:
        return {"node": value, "tensor": name, "words": "the output's delta is not the cotangent sent", "hints": []}
    consumers = graph.consumers(value)
    g = got[name]
    parts = t["parts"][value]
    if len(consumers) == 1:
        node, slot = consumers[0]
        hints = _node_hints(case, t, node, slot, g) + _ignored_cotangent(case, wrong) + scale_hint(wrong)
        return {"node": node, "tensor": name, "hints": hints,
                "words": f"node {node} ({graph.node(node).op}): its backward gives a wrong d{slot} "
                         f"(its own delta is right{'' if f'delta {node}' in got else ' as far as the leaves show'})"}
    fan = _fan_out(g, parts, s["parts"][value], case.dtype)
    if fan is not None:
        missing = [key for key in parts if key not in fan]
        words = (f"{value} feeds {len(consumers)} nodes ({', '.join(c for c, _ in consumers)}); its gradient "
                 f"equals the part from {', '.join(k.split('.')[0] for k in fan)} alone, the part from "
                 f"{', '.join(k.split('.')[0] for k in missing)} is missing: assigned with = instead of "
                 f"accumulated with +=")
        return {"node": value, "tensor": name, "words": words, "hints": [words]}
    for node, slot in consumers:                  # one consumer wrong, the others right: a slip of its record?
        implied = g - sum(p for key, p in parts.items() if key != f"{node}.{slot}")
        hints = _node_hints(case, t, node, slot, implied)
        if hints:
            return {"node": node, "tensor": name, "hints": hints,
                    "words": f"node {node} ({graph.node(node).op}): its backward gives a wrong d{slot} "
                             f"({value} also feeds {', '.join(c for c, _ in consumers if c != node)})"}
    return {"node": None, "tensor": name, "hints": scale_hint(wrong),
            "words": f"{value} feeds {', '.join(c for c, _ in consumers)}; the sum of their parts is wrong "
                     f"and matches no subset of them: one of their backwards is wrong"}


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

    @property
    def verdict(self):
        return "fail" if self.failures else ("pass" if self.cases else "none")

    def summary(self):
        head = (f"bpcheck graph {self.arch}: {self.verdict.upper()} -- {self.candidate}: {self.cases} cases, "
                f"{self.failures} failing, in {self.seconds:.1f} s")
        if self.first is None:
            return head
        culprit, rows = self.first["culprit"], self.first["rows"]
        wrong = [r for r in rows if r["status"] == "bug"]
        lines = [head, diagnosis({**self.first, "rows": wrong[:1]})]
        if len(wrong) > 1:
            lines.append(f"  and {len(wrong) - 1} more wrong tensors after it in the backward pass: "
                         + ", ".join(r["tensor"] for r in wrong[1:]))
        if culprit:
            lines.append(f"first wrong node: {culprit['node']} -- {culprit['words']}")
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
            report.cases += 1
            report.coverage[(family, dtype)] += 1
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
