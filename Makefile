# scoregate: every target creates what it needs (the venv, the demo models) on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WORKDIR ?= .scoregate

.PHONY: venv system-deps protos lint test demo up loadtest bench bench-lineage clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

# Debian packages the tests run as real processes: Chromium drives the risk page's browser tests,
# Prometheus (and its promtool) evaluates the chart's alert rules against the store's metrics.
SYSTEM_PACKAGES := chromium prometheus
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-deps:
	@missing="$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The one pinned generator command (grpcio-tools and mypy-protobuf versions are in pyproject.toml).
protos: $(STAMP)
	PYTHON=$(abspath $(PY)) protos/generate.sh $(CURDIR)/protos

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint system-deps
	$(VENV)/bin/pytest

# Models are kept in $(WORKDIR)/models between runs; each demo run starts with an empty lineage store.
demo: $(STAMP)
	rm -rf $(WORKDIR)/demo
	$(VENV)/bin/scoregate demo --workdir $(WORKDIR)/demo --model-dir $(WORKDIR)/models

up: $(STAMP)
	$(VENV)/bin/scoregate up --workdir $(WORKDIR)/up --model-dir $(WORKDIR)/models

# ~20 s of steady load on a local topology this target starts and stops; thresholds set the exit
# code. Reports: $(WORKDIR)/loadtest/reports/steady{.html,_stats.csv,.summary.json}.
loadtest: $(STAMP)
	$(PY) -m loadtests run steady --local --workdir $(WORKDIR)/loadtest --model-dir $(WORKDIR)/models \
		--users 8 --run-time 20s --p99-ms 250 --max-fail-ratio 0

# Side-by-side benchmark (floors, anchors, scoregate paths) in one run; BENCH_QUICK=1 for a shorter run.
# Prints the table and the target verdicts (exit 1 when one is missed); JSON and PNGs in
# $(WORKDIR)/bench.
bench: $(STAMP)
	$(PY) -m loadtests.bench --workdir $(WORKDIR)/bench --model-dir $(WORKDIR)/models \
		$(if $(BENCH_QUICK),--quick)

# GetDecision, serving-at-T and drift p99 on a store of 1,000,000 decisions, SQLite and PostgreSQL.
bench-lineage: $(STAMP)
	$(PY) -m loadtests.bench.lineage_store --rows $(or $(ROWS),1000000)

clean:
	rm -rf $(WORKDIR) .pytest_cache .mypy_cache .ruff_cache
