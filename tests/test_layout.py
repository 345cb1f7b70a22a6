"""The import layout: bpcheck's subpackages are ordered along the data flow and imports point one way.

Every module under bpcheck/ is parsed (``ast``) and every import it makes is collected, imports
inside functions (lazy ones) included. A module belongs to the subpackage it sits in
(bpcheck/<subpackage>/...); it may import from its own subpackage or an earlier one in ``ORDER``,
never from a later one, and no chain of imports comes back to where it started. The package root
(bpcheck/__init__.py: ``__version__`` and the lazy ``assert_backprop``, ``check_op``, ``assert_op``)
stands outside the order: anything may read ``__version__`` from it. Outside bpcheck/: the
reference imports nothing from bpcheck, the oracles, torch or jax; the oracles never import the
reference; the framework oracles read only the records (ops, core), the truth's rules nothing of
bpcheck. Each rule is also run on a fake graph that breaks it, to show the check can fail.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "bpcheck"
ORDER = ("core", "ops", "exact", "judge", "cases", "run", "opcheck", "train", "diagnose", "report", "proof", "cli")
NOT_CODE = ("schemas",)     # package data, no modules
REFERENCE_MUST_NOT_IMPORT = ("bpcheck", "oracles", "torch", "jax", "jaxlib")


def module_name(path, root=ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path, root=ROOT):
    """[(imported module, line)] of every import in the file at ``path``, at any depth; relative
    imports resolved; ``from a import b`` gives a.b where that is a module, else a."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.append((full if _is_module(full, root) else target, node.lineno))
    return out


def _is_module(name, root=ROOT):
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph(root=ROOT):
    """{module: [(imported bpcheck module, line)]} for every module under bpcheck/."""
    return {module_name(path, root): [(t, line) for t, line in imports(path, root)
                                      if t == PACKAGE or t.startswith(PACKAGE + ".")]
            for path in sorted((root / PACKAGE).rglob("*.py"))}


def subpackage(module):
    """The subpackage a module belongs to; None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def backward_imports(graph, order=ORDER):
    """["a imports b (line n): x after y"] for each import of a module in a later subpackage."""
    found = []
    for module, targets in graph.items():
        here = subpackage(module)
        if here is None:                       # the root's lazy exports: outside the order
            continue
        for target, line in targets:
            there = subpackage(target)
            if there is not None and order.index(there) > order.index(here):
                found.append(f"{module} imports {target} (line {line}): {there} comes after {here}")
    return found


def subpackage_edges(graph):
    """{(importing subpackage, imported subpackage)} between different subpackages."""
    return {(subpackage(m), subpackage(t)) for m, targets in graph.items() for t, _ in targets
            if None not in (subpackage(m), subpackage(t)) and subpackage(m) != subpackage(t)}


def against_order(edges, order=ORDER):
    """The subpackage edges that point forward in ``order`` (each should point back)."""
    return sorted((a, b) for a, b in edges if order.index(b) > order.index(a))


def cycles(graph):
    """Import cycles between modules (each as a list of modules), the package root left out."""
    edges = {m: sorted({t for t, _ in targets if t != m and subpackage(t) is not None and t in graph})
             for m, targets in graph.items() if subpackage(m) is not None}
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in edges.get(m, ()):
            if state.get(t) == "open":
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"
    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def top_level_imports(directory):
    """{file: {top-level package imported}} for the .py files in ``directory``, any depth."""
    return {path.name: {name.split(".")[0] for name, _ in imports(path) if name}
            for path in sorted((ROOT / directory).rglob("*.py"))}


# ---- the layout ----------------------------------------------------------------

GRAPH = import_graph()


def test_every_module_sits_in_a_declared_subpackage():
    on_disk = {p.name for p in (ROOT / PACKAGE).iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert on_disk - set(NOT_CODE) == set(ORDER)
    assert [m for m in GRAPH if m != PACKAGE and subpackage(m) not in ORDER] == []
    assert [p.name for p in (ROOT / PACKAGE).glob("*.py")] == ["__init__.py"]


def test_the_graph_sees_lazy_imports():
    # run/pool.py imports the engine inside functions only; a checker that missed them would pass anything
    assert any(t == "bpcheck.run.engine" for t, _ in GRAPH["bpcheck.run.pool"])
    assert len(GRAPH) > 60


def test_subpackages_import_only_earlier_subpackages():
    assert against_order(subpackage_edges(GRAPH)) == []


def test_no_module_imports_a_module_in_a_later_subpackage():
    assert backward_imports(GRAPH) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_reference_imports_nothing_of_bpcheck_the_oracles_torch_or_jax():
    found = {f: sorted(set(REFERENCE_MUST_NOT_IMPORT) & names)
             for f, names in top_level_imports("reference").items()}
    assert {f: names for f, names in found.items() if names} == {}


def test_the_oracles_never_import_the_reference():
    found = [f for f, names in top_level_imports("oracles").items() if "reference" in names]
    assert found == []


def test_the_framework_oracles_read_only_the_records_and_the_truth_reads_no_bpcheck():
    # bpcheck's records read the certified scalar rules (oracles/arb_oracle.py); the framework oracles
    # are built from the records' bindings. So the truth imports nothing of bpcheck (no cycle), and the
    # framework oracles nothing but the records and core (never a judge of what they produce).
    reads = {path.name: sorted(name for name, _ in imports(path) if name.split(".")[0] == PACKAGE)
             for path in sorted((ROOT / "oracles").glob("*.py"))}
    assert reads["arb_oracle.py"] == [] and reads["numeric.py"] == []
    assert reads["torch_oracle.py"] and reads["jax_oracle.py"]
    assert {f: [n for n in names if subpackage(n) not in ("ops", "core")]
            for f, names in reads.items()} == {f: [] for f in reads}


# ---- known-bad controls: the checks can fail ------------------------------------

FAKE = {
    "bpcheck.core.spec": [],
    "bpcheck.judge.judge": [("bpcheck.core.spec", 1), ("bpcheck.diagnose.diagnose", 7)],   # backward
    "bpcheck.diagnose.diagnose": [("bpcheck.judge.judge", 3)],
    "bpcheck": [("bpcheck.cli.cli", 9)],                                                     # the root: allowed
}


def test_a_backward_import_is_reported():
    assert backward_imports(FAKE) == [
        "bpcheck.judge.judge imports bpcheck.diagnose.diagnose (line 7): diagnose comes after judge"]
    assert against_order(subpackage_edges(FAKE)) == [("judge", "diagnose")]


def test_a_cycle_is_reported():
    assert cycles(FAKE) == [["bpcheck.diagnose.diagnose", "bpcheck.judge.judge", "bpcheck.diagnose.diagnose"]]
    assert cycles({"bpcheck.run.a": [("bpcheck.run.b", 1)], "bpcheck.run.b": [("bpcheck.run.a", 1)]})


def test_a_lazy_and_a_relative_import_are_seen(tmp_path):
    pkg = tmp_path / PACKAGE / "judge"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "compare.py").write_text("")
    (pkg / "judge.py").write_text("from . import compare\n\n\ndef f():\n    from bpcheck.report.report import x\n")
    assert imports(pkg / "judge.py", tmp_path) == [("bpcheck.judge.compare", 1), ("bpcheck.report.report", 5)]
    assert backward_imports(import_graph(tmp_path)) == [
        "bpcheck.judge.judge imports bpcheck.report.report (line 5): report comes after judge"]
