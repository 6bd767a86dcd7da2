# clicktrack development tasks. `make run` and `make test` set everything up on a fresh machine:
# the virtualenv, the project's packages, and Redis/Postgres (found, or started under .data/).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.clicktrack-installed
DEVSTACK := $(PY) scripts/devstack

# Extra arguments for pytest (test, faults), bench/run.py or locust: make test ARGS="-k foo"
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test services lint fmt clean faults bench bench-reports loadtest

help:
	@echo "make run        migrate, then run the app (and the flusher) at http://127.0.0.1:8000"
	@echo "make test       ruff check, ruff format --check, mypy, pytest (ARGS=... goes to pytest)"
	@echo "make services   find or start Redis and Postgres and print their URLs, until Ctrl-C"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make fmt        sort imports and format the code"
	@echo "make faults     the fault-injection suite (tests/faults)"
	@echo "make bench      the benchmark (bench/run.py; ARGS=\"--quick\"; docs/performance.md)"
	@echo "make bench-reports  reports on 10M clicks, rollups' flusher cost (bench/reports.py)"
	@echo "make loadtest   the locust load test, headless, pass/fail (loadtests/locustfile.py)"
	@echo "make clean      remove .data/ (throwaway servers' data) and tool caches"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(DEVSTACK) run

test: $(STAMP)
	$(DEVSTACK) test -- $(ARGS)

services: $(STAMP)
	$(DEVSTACK) services

faults: $(STAMP)
	$(DEVSTACK) faults -- $(ARGS)

bench: $(STAMP)
	$(DEVSTACK) bench -- $(ARGS)

# Starts its own throwaway Redis and Postgres (needs their binaries, like make run).
bench-reports: $(STAMP)
	$(PY) -m bench.reports $(ARGS)

loadtest: $(STAMP)
	$(DEVSTACK) loadtest -- $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: $(STAMP)
	$(PY) -m ruff check --select I --fix .
	$(PY) -m ruff format .

# Just removes the files: stop `make run` / `make services` first.
clean:
	rm -rf .data .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts
