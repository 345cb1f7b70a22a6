# bpcheck: `make test` runs the test suite, `make report` writes reports/.
# Both create .venv on first use and install the project under constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test report proof bench browser clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n auto

report: $(STAMP)
	$(BIN)/bpcheck report

# The proof in reports/: the bug zoo (selftest.md), gradcheck and check_grads on the same zoo
# (baselines.md), and the false-alarm campaign on 10^5 cases (false_alarms.md); the same for the op
# catalog (ops_*) and whole networks (graph_baselines.md, graph_false_alarms.md); ~45 min on 2 cores.
proof: $(STAMP)
	$(BIN)/bpcheck selftest --out reports
	$(BIN)/bpcheck selftest --baselines 1 --out reports
	$(BIN)/bpcheck selftest --false-alarms 100000 --out reports
	$(BIN)/bpcheck selftest --ops --out reports
	$(BIN)/python -m bpcheck.opcheck.baselines --out reports
	$(BIN)/bpcheck selftest --op-false-alarms 110000 --out reports
	$(BIN)/python -m bpcheck.opcheck.graph_baselines --out reports
	$(BIN)/bpcheck selftest --graph-false-alarms 6000 --out reports

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/ops.py
	$(BIN)/python benchmarks/graphs.py
	$(BIN)/python benchmarks/train.py

# Headless Chromium for the report's browser test and Node.js for the JavaScript example
# (Debian packages; needs root). CI fails a test that skips for want of either.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v node >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
