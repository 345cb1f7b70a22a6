"""The network drawing, ``bpcheck graph --html`` and the graph report (reports/graphs.*).

- The SVG names every node, leaf and constant; colours the box of a wrong gradient red and a right one
  green (``tests/meta/graph_zoo/bug_residual_assigned.py`` against ``reference/networks.py``), outlines
  the culprit; escapes a hostile node name; gives the same bytes twice.
- ``--html`` writes a page with the verdict and the drawing: PASS for the reference, FAIL for a zoo member.
- The graph report writes graphs.json (valid against its schema), graphs.md and graphs.html with one row
  per architecture x candidate x dtype; the correct candidates all pass, a zoo member fails at its node.

Each check is run on a known-bad input too, so it can fail.
"""
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from bpcheck.core.spec import schema
from bpcheck.opcheck.candidates import load_module
from bpcheck.ops.graph import Graph
from bpcheck.opcheck.graph_candidates import record_candidate
from bpcheck.ops.graph_cases import GraphCase
from bpcheck.opcheck.graph_check import check_graph, judge_graph_case
from bpcheck.opcheck.graph_cli import graph_command
from bpcheck.opcheck.graph_report import graph_report, plain_judgement, validate_page
from bpcheck.opcheck.graph_svg import COLOURS, svg
from reference import networks

ZOO = Path(__file__).parent / "meta" / "graph_zoo"
RESIDUAL_BUG = ZOO / "bug_residual_assigned.py"
TIED_BUG = ZOO / "bug_tied_weight_assigned.py"
SVG = "{http://www.w3.org/2000/svg}"


def _boxes(drawing):
    """{box name: (status, fill, culprit?)} read back from the SVG as XML (which also proves it parses)."""
    root = ET.fromstring(drawing)
    found = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "box":
            fill = g.find(f"{SVG}rect").get("fill")
            found[g.get("data-name")] = (g.get("data-status"), fill, g.get("data-culprit") == "true")
    return found


def _missing_names(drawing, graph):
    """The graph's values that have no box or whose name is not written in the drawing."""
    boxes = _boxes(drawing)
    texts = {t.text for t in ET.fromstring(drawing).iter(f"{SVG}text")}
    return [v for v in graph.leaves + graph.constants + tuple(n.name for n in graph.nodes)
            if v not in boxes or v not in texts]


@pytest.fixture(scope="module")
def residual():
    """(good drawing and its case, bad drawing and its case): the reference and the assigned skip."""
    good = plain_judgement("residual_mlp", networks.residual_mlp, "float32", 0)
    bad = check_graph("residual_mlp", load_module(RESIDUAL_BUG).net, per_family=1).first
    return good, (bad["case"], bad["rows"], bad["culprit"])


# --- the drawing -------------------------------------------------------------------------------------

def test_the_drawing_names_every_node_leaf_and_constant(residual):
    (case, rows, culprit), _ = residual
    drawing = svg(case, rows, culprit)
    assert _missing_names(drawing, case.graph) == []
    other = plain_judgement("tied_embedding", networks.tied_embedding, "float32", 0)   # known bad: another graph
    assert "fc1" in _missing_names(svg(*other), case.graph)


def test_a_wrong_gradient_is_red_a_right_one_green_and_the_culprit_outlined(residual):
    good, bad = residual
    ok, wrong = _boxes(svg(*good)), _boxes(svg(*bad))
    assert wrong["x"] == ("fail", COLOURS["fail"], True)          # dx assigned, not accumulated: x is red
    assert ok["x"][:2] == ("pass", COLOURS["pass"]) and not ok["x"][2]
    for name in ("fc1", "relu", "fc2", "skip", "w1", "loss"):      # the rest of the bad network is right
        assert wrong[name][0] in ("pass", "near") and not wrong[name][2]
        assert ok[name][0] in ("pass", "near")
    assert wrong["y"][0] == "none"                                 # a constant has no gradient to judge


def test_a_node_whose_own_backward_is_wrong_is_red_and_the_others_not():
    bad = check_graph("tied_embedding", load_module(TIED_BUG).net, per_family=1).first
    boxes = _boxes(svg(bad["case"], bad["rows"], bad["culprit"]))
    assert boxes["W"][0] == "fail" and boxes["W"][2]
    assert [name for name, (status, _, _) in boxes.items() if status == "fail"] == ["W"]


def _hostile_case(name):
    graph = Graph.from_json({"inputs": ["x"], "params": ["w", "b"], "constants": [],
                             "nodes": [{"name": name, "op": "affine", "inputs": {"x": "x", "w": "w", "b": "b"}},
                                       {"name": "r", "op": "relu", "inputs": {"x": name}}],
                             "output": "r"})
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal((2, 3)), "w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    return GraphCase("<b>arch</b>", "float64", "plain", 0, {"N": 2}, graph, values, {},
                     rng.standard_normal((2, 2)))


def test_a_hostile_node_name_is_escaped():
    name = "<script>alert('x')</script>\x07"
    case = _hostile_case(name)
    rows, culprit, _ = judge_graph_case(case, record_candidate(slip=None))
    drawing = svg(case, rows, culprit)
    assert "<script" not in drawing and "<b>" not in drawing and "\x07" not in drawing
    assert "&lt;script&gt;" in drawing
    assert "<script>alert('x')</script>\\x07" in _boxes(drawing)     # the name, read back as XML, is intact
    assert "<script" in drawing.replace("&lt;", "<")                # known bad: unescaped, the check sees it


def test_the_drawing_is_the_same_bytes_twice(residual):
    (case, rows, culprit), bad = residual
    assert svg(case, rows, culprit) == svg(case, rows, culprit)
    again = plain_judgement("residual_mlp", networks.residual_mlp, "float32", 0)
    assert svg(*again) == svg(case, rows, culprit)                  # judged afresh: the same bytes
    assert svg(*bad) != svg(case, rows, culprit)                    # known bad: another case differs
    other = plain_judgement("residual_mlp", networks.residual_mlp, "float32", 1)
    assert svg(*other) != svg(case, rows, culprit)


# --- bpcheck graph --html ----------------------------------------------------------------------------

@pytest.mark.parametrize("target, verdict, code", [
    ("reference/networks.py:tied_embedding", "PASS", 0),
    (f"{TIED_BUG}:net", "FAIL", 1),
], ids=["reference", "zoo member"])
def test_html_writes_the_verdict_and_the_drawing(tmp_path, target, verdict, code):
    page = tmp_path / "graph.html"
    result = CliRunner().invoke(graph_command, ["tied_embedding", "--fn", target, "--per-family", "1",
                                                "--html", str(page)])
    assert result.exit_code == code, result.output
    text = page.read_text()
    assert "bpcheck graph tied_embedding: <span" in text and f">{verdict}</span>" in text
    assert text.count("<svg") == 1 and "data-name=\"W\"" in text
    other = {"PASS": "FAIL", "FAIL": "PASS"}[verdict]
    assert f">{other}</span>" not in text
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert ("data-status=\"fail\"" in text) == (verdict == "FAIL")


def test_the_page_escapes_what_it_shows():
    case = _hostile_case("<img src=x onerror=alert(1)>")
    rows, culprit, _ = judge_graph_case(case, record_candidate())
    report = check_graph("tied_embedding", networks.tied_embedding, per_family=1, dtypes=("float64",))
    page = validate_page(report, case, rows, culprit)
    assert "<img" not in page and "&lt;img src=x" in page
    assert "<b>arch" not in page and "&lt;b&gt;arch" in page


# --- the graph report --------------------------------------------------------------------------------

RUN = re.compile(r"^\| (\S+) \| (\S+) \| (float32|float64) \| (\d+) \| (\w+)")


def test_the_graph_report_writes_a_row_per_architecture_candidate_and_dtype(tmp_path):
    report = graph_report(tmp_path, per_family=1, jax_per_family=1, seed=3, only=["tied_embedding"], jobs=1,
                          echo=lambda line: None)
    on_disk = json.loads((tmp_path / "graphs.json").read_text())
    assert on_disk == report
    jsonschema.Draft202012Validator(schema("graphs.schema.json")).validate(on_disk)
    want = {("tied_embedding", c, d) for c in ("reference", "records", "torch", "jax") for d in ("float32", "float64")}
    assert sorted((r["arch"], r["candidate"], r["dtype"]) for r in report["runs"]) == sorted(want)
    assert {r["verdict"] for r in report["runs"]} == {"pass"}
    assert all(r["cases"] == (1 if r["candidate"] == "jax" else 2) for r in report["runs"])   # JAX: plain only
    assert all(r["worst_margin"] not in (None, "nan") and float(r["worst_margin"]) >= 1 for r in report["runs"])
    md = [RUN.match(line) for line in (tmp_path / "graphs.md").read_text().splitlines()]
    assert sorted((m[1], m[2], m[3]) for m in md if m) == sorted(want)
    assert all(m[5] == "pass" for m in md if m)
    page = (tmp_path / "graphs.html").read_text()
    assert page.count("<svg") == 1 and "data-status=\"fail\"" not in page and "<tr class='pass'>" in page


def test_the_graph_report_fails_a_wrong_network_at_its_node(tmp_path):
    bad = f"{TIED_BUG}:net"
    report = graph_report(tmp_path, per_family=1, seed=3, only=["tied_embedding"], jobs=1, dtypes=("float64",),
                          candidates=(bad, "records"), echo=lambda line: None)
    verdicts = {r["candidate"]: r for r in report["runs"]}
    assert verdicts["records"]["verdict"] == "pass"
    assert verdicts[bad]["verdict"] == "fail" and verdicts[bad]["first"]["node"] == "W"
    assert float(verdicts[bad]["worst_margin"]) < 1
    jsonschema.Draft202012Validator(schema("graphs.schema.json")).validate(report)
    assert "| fail |" in (tmp_path / "graphs.md").read_text()
    page = (tmp_path / "graphs.html").read_text()
    assert "<tr class='fail'>" in page and "data-culprit=\"true\"" in page   # drawn from the failing case
    broken = dict(report, runs=[dict(report["runs"][0], verdict="maybe")])
    with pytest.raises(jsonschema.ValidationError):                         # the schema can fail too
        jsonschema.Draft202012Validator(schema("graphs.schema.json")).validate(broken)


@pytest.mark.parametrize("flags, called, code", [
    (["--ops-only"], True, 0),
    (["--ops-only", "--seed", "7"], True, 0),
    (["--ops-only", "--no-graphs"], False, 0),
    (["--ops-only", "FAIL"], True, 1),                       # known bad: a failing graph run exits 1
])
def test_bpcheck_report_writes_the_graph_report_with_its_seed_unless_told_not(tmp_path, monkeypatch, flags,
                                                                              called, code):
    from bpcheck.opcheck import graph_report as module
    from bpcheck.opcheck import report as op_module
    from bpcheck.cli.report import report_command
    from bpcheck.report.report import DEFAULT_SEED
    calls = []
    verdict = "fail" if "FAIL" in flags else "pass"

    def fake(out, **kwargs):
        calls.append(kwargs)
        return {"runs": [{"arch": "a", "candidate": "c", "dtype": "float64", "cases": 1, "failures": 1,
                          "verdict": verdict}]}
    monkeypatch.setattr(module, "graph_report", fake)
    monkeypatch.setattr(op_module, "op_report", lambda out, **kwargs: {"groups": []})
    result = CliRunner().invoke(report_command, [f for f in flags if f != "FAIL"] + ["--out", str(tmp_path)])
    assert result.exit_code == code, result.output
    assert bool(calls) == called
    if calls:
        assert calls[0]["seed"] == (7 if "7" in flags else DEFAULT_SEED)
