"""Test configuration, resolved once: Hypothesis profile and seed.

Profiles: ``dev`` (fast, default on a workstation), ``ci`` (chosen when CI=true:
200 examples per property), ``thorough`` (5,000). Choose one with
``BPCHECK_PROFILE=thorough``. The seed is printed in the header; rerun a run
exactly with ``pytest --hypothesis-seed=N``.
"""
import os
import random

import pytest
from hypothesis import HealthCheck, settings

pytest.register_assert_rewrite("tests.helpers")    # their asserts explain themselves as the tests' own do

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, **_COMMON)
settings.register_profile("ci", max_examples=200, **_COMMON)
settings.register_profile("thorough", max_examples=5000, **_COMMON)
PROFILE = os.environ.get("BPCHECK_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
settings.load_profile(PROFILE)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Pick one seed per run; pytest-xdist workers receive the controller's."""
    if hasattr(config, "workerinput"):
        config.option.hypothesis_seed = config.workerinput["bpcheck_seed"]
    elif getattr(config.option, "hypothesis_seed", None) is None:
        config.option.hypothesis_seed = random.randrange(2**32)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput["bpcheck_seed"] = node.config.option.hypothesis_seed


# Under CI a test skipped because a tool is missing (Chromium, Node.js: "... is not installed") or a
# module cannot be imported (``pytest.importorskip``: "could not import ...") fails the run: those
# tests must run there (.ci/run installs the tools, the [test] extra the modules), not pass by skipping.
# tests/test_shards.py::test_the_guard_fails_a_ci_run_that_skips_for_a_missing_module checks it.
REQUIRE_TOOLS = os.environ.get("CI") == "true" or os.environ.get("BPCHECK_REQUIRE_TOOLS") == "1"
_MISSING_TOOL = ("is not installed", "could not import")
_missing = []


def pytest_runtest_logreport(report):
    if report.skipped and any(text in str(report.longrepr) for text in _MISSING_TOOL):
        _missing.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_TOOLS and _missing and not hasattr(session.config, "workerinput"):
        session.config.get_terminal_writer().line(
            f"bpcheck: {len(_missing)} tests skipped for a missing tool under CI: {_missing[:3]}", red=True)
        session.exitstatus = 1


def pytest_report_header(config):
    seed = getattr(config.option, "hypothesis_seed", None)
    return (f"bpcheck: hypothesis profile {PROFILE!r} ({settings().max_examples} examples per property), "
            f"seed {seed} (rerun with --hypothesis-seed={seed})")


@pytest.fixture(scope="session")
def candidate(request):
    """The implementation under test: the reference, or ``--bpcheck-target``."""
    from bpcheck.run.backends import load_target
    target = request.config.getoption("bpcheck_target", default=None)
    return load_target(target or "reference")
