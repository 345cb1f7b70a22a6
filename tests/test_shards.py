"""Sweeps beyond one machine: ``report --shard I/N`` + ``bpcheck merge`` give the unsharded run's
report, and the same pool runs on a Dask distributed cluster (a LocalCluster here) with the same
records as the local run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpcheck.cli.cli import main
from bpcheck.core.records import CASES_FILE, load_records

SMALL = ["--examples", "1", "--losses", "mse,softmax_cross_entropy", "--activations", "tanh,relu",
         "--dtypes", "float64", "--max-depth", "3", "--jobs", "1", "--no-progress", "--no-ops"]


def _report(out, *extra):
    result = CliRunner().invoke(main, ["report", *SMALL, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def _same(records):
    """What a record says, without how long it took."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    return out, _report(out)


def test_merged_shards_are_the_unsharded_run(whole, tmp_path):
    out, report = whole
    shards = [tmp_path / f"s{i}" for i in (1, 2, 3)]
    sizes = [len(load_records(d / CASES_FILE)) for i, d in enumerate(shards, 1) if _report(d, "--shard", f"{i}/3")]
    assert sum(sizes) == report["counts"]["cases"] and min(sizes) > 0
    result = CliRunner().invoke(main, ["merge", *map(str, reversed(shards)), "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert _same(load_records(tmp_path / "merged" / CASES_FILE)) == _same(load_records(out / CASES_FILE))
    for key in ("counts", "groups", "side_by_side", "sensitivity", "failures", "coverage", "families"):
        assert merged[key] == report[key], key


def test_merge_refuses_what_is_not_one_run(whole, tmp_path):
    one = tmp_path / "one"
    _report(one, "--shard", "1/2")
    runner = CliRunner()
    missing = runner.invoke(main, ["merge", str(one), "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "need shards 1..2 once each" in missing.output
    other = tmp_path / "other"
    _report(other, "--shard", "2/2", "--seed", "7")
    mixed = runner.invoke(main, ["merge", str(one), str(other), "--out", str(tmp_path / "m")])
    assert mixed.exit_code == 2 and "seed differ" in mixed.output
    unsharded = runner.invoke(main, ["merge", str(whole[0]), "--out", str(tmp_path / "m")])
    assert unsharded.exit_code == 2 and "not a shard" in unsharded.output
    twice = runner.invoke(main, ["merge", str(one), str(one), "--out", str(tmp_path / "m")])
    assert twice.exit_code == 2


@pytest.mark.parametrize("value", ["0/2", "3/2", "a/b", "2"])
def test_a_bad_shard_is_a_usage_error(value, tmp_path):
    result = CliRunner().invoke(main, ["report", *SMALL, "--out", str(tmp_path), "--shard", value])
    assert result.exit_code == 2 and "--shard" in result.output


def test_the_same_run_on_a_dask_cluster(whole, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        _report(tmp_path, "--scheduler", cluster.scheduler_address)
        done = {t.key for t in cluster.scheduler.transition_log
                if t.key.startswith("_dask_run-") and t.finish == "memory"}
        assert len(done) >= 2                        # the chunks ran on the cluster's workers
    by_case = lambda path: sorted(_same(load_records(path)), key=lambda r: r["case"])   # noqa: E731
    assert by_case(tmp_path / CASES_FILE) == by_case(whole[0] / CASES_FILE)   # written as they come


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("bpcheck.run.pool.CONNECT_SECONDS", 2)
    result = CliRunner().invoke(main, ["report", *SMALL, "--out", str(tmp_path), "--scheduler",
                                       "tcp://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.output


def test_the_guard_fails_a_ci_run_that_skips_for_a_missing_module(tmp_path):
    """tests/conftest.py: under CI (here BPCHECK_REQUIRE_TOOLS=1) a test that ``pytest.importorskip``
    skips fails the run; without it the same test is a plain skip. ``distributed`` is hidden by a
    module of that name that cannot be imported."""
    hidden = tmp_path / "hidden" / "distributed"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'distributed'\", "
                                        "name='distributed')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BPCHECK_REQUIRE_TOOLS")}
    env["PYTHONPATH"] = os.pathsep.join([str(hidden.parent), *filter(None, [env.get("PYTHONPATH")])])
    test = f"{Path(__file__).resolve()}::test_an_unreachable_scheduler_is_a_clear_error"
    pytest_ = str(Path(sys.executable).with_name("pytest"))

    def run(**extra):
        return subprocess.run([pytest_, test, "-p", "no:cacheprovider", "-n", "0", "-rs"], capture_output=True,
                              text=True, env={**env, **extra}, cwd=Path(__file__).resolve().parents[1], timeout=300)
    plain, ci = run(), run(BPCHECK_REQUIRE_TOOLS="1")
    assert plain.returncode == 0 and "could not import 'distributed'" in plain.stdout, plain.stdout[-2000:]
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "1 tests skipped for a missing tool under CI" in ci.stdout, ci.stdout[-2000:]
