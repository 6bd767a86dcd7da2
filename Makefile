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
.PHONY: help run test services lint fmt clean faults bench bench-reports loadtest lock

help:
	@echo "make run        migrate, then run the app (and the flusher and the postback sender) at http://127.0.0.1:8000"
	@echo "make test       ruff check, ruff format --check, mypy, pytest (ARGS=... goes to pytest)"
	@echo "make services   find or start Redis and Postgres and print their URLs, until Ctrl-C"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make fmt        sort imports and format the code"
	@echo "make faults     the fault-injection suite (tests/faults)"
	@echo "make bench      the benchmark (bench/run.py; ARGS=\"--quick\"; docs/performance.md)"
	@echo "make bench-reports  reports on 10M clicks, rollups' flusher cost (bench/reports.py)"
	@echo "make loadtest   the locust load test, headless, pass/fail (loadtests/locustfile.py)"
	@echo "make clean      remove .data/ (throwaway servers' data) and tool caches"
	@echo "make lock       pin every package installed in .venv into constraints.txt (docs/operations.md)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml or constraints.txt is newer than the stamp. Every package
# is installed at the version constraints.txt pins (`make lock` writes it).
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -c constraints.txt -e '.[dev]'
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

# Pin every package installed in .venv (runtime and dev, direct and transitive; not the project)
# at its installed version. Install the change first, without -c: docs/operations.md,
# "Dependencies". Refuses a set with broken requirements (pip check).
lock: | $(PY)
	$(PY) -m pip check
	{ echo '# Every package of the dev install (pip install -e ".[dev]"), runtime and dev, direct'; \
	  echo '# and transitive, at one version each. make run, make test and the Dockerfile install'; \
	  echo '# with it as constraints (pip -c), so all get these versions. CPython 3.11 on Linux.'; \
	  echo '# Written by `make lock` (pip freeze of .venv): do not edit by hand. To add, update or'; \
	  echo '# remove a package: docs/operations.md, "Dependencies".'; \
	  $(PY) -m pip freeze --exclude-editable --exclude clicktrack; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

# Just removes the files: stop `make run` / `make services` first.
clean:
	rm -rf .data .mypy_cache .ruff_cache .pytest_cache .hypothesis test-artifacts
