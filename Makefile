# StreamLab developer commands. Every target creates (and reuses) the virtual environment at .venv.
#   make demo          run the flagship example pipeline (writes out/demo/)
#   make test          mypy, then the whole test suite (installs the Prometheus server if it can)
#   make reliability   the full reliability suite, report in out/reliability-report.json
#   make mutate        mutation testing (mutmut) per module; kill rates in out/mutmut/summary.json
#   make bench         the benchmark suite, table on stdout and benchmarks/results/latest.json
#   make lint          ruff and mypy (configured in pyproject.toml: [tool.mypy])

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test test-fast reliability mutate bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: venv
	@mkdir -p out/demo
	$(PY) -m streamlab run examples/eeg_monitor.json --summary out/demo/summary.json
	@echo "plots: out/demo/raw.png out/demo/filtered.png  band powers: out/demo/band_power.jsonl  report: out/demo/summary.json"

# mypy first: ~12 s of CPU cold (31 s wall on a loaded 2-core machine), a few seconds warm
test: venv
	$(PY) -m mypy
	@bash scripts/system-deps.sh
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -x -m "not integration and not slow"

reliability: venv
	$(PY) -X dev scripts/reliability.py --out out/reliability-report.json

# MODULES: some of frame channel resilience ledger config cli (default: all). Not part of `test`.
mutate: venv
	$(PY) scripts/mutate.py --max-children $(or $(MUTATE_CHILDREN),2) $(MODULES)

bench: venv
	@mkdir -p benchmarks/results
	$(PY) -m benchmarks.run --out benchmarks/results/latest.json

lint: venv
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m mypy

clean:
	rm -rf $(VENV) out build *.egg-info
