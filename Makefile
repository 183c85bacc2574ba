# cqrskit: the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help venv services services-down services-status lint typecheck docs test unit demo chaos soak bench clean

help:
	@echo "make demo             start the services and run the demo"
	@echo "make test             install, start the services, lint, type-check and run every test"
	@echo "make chaos            kill and stop every part of the pipeline under load; count losses"
	@echo "make soak             a steady load for SOAK_MINUTES (30); memory must stay flat"
	@echo "make docs             build the documentation into site/ (mkdocs, strict)"
	@echo "make bench            run every benchmark of bench/ (about 40 min); QUICK=1: about 5"
	@echo "make services         start PostgreSQL, Kafka and Elasticsearch on 127.0.0.1"
	@echo "make services-down    stop them"
	@echo "make services-status  say which are up"

# The virtual environment is rebuilt only when pyproject.toml changes; pip's
# own cache keeps the downloads between clones.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "cqrskit needs Python 3.11 or newer as $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

services:
	@bash scripts/services.sh start

services-down:
	@bash scripts/services.sh stop

services-status:
	@bash scripts/services.sh status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy --strict cqrskit cqrskit_pytest

# Strict: a broken link, a missing snippet, a stale CLI page or a public name
# without its entry in the API reference fails the build.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@! grep -rl "Sentinel\.UNSET" site || { echo "a sentinel repr reached the site"; exit 1; }
	@! grep -rl --include='*.html' -e '─' -e '│' site || { echo "a box drawing reached the site: draw it in Mermaid"; exit 1; }

unit: venv
	$(BIN)/pytest -m 'not integration'

test: venv services lint typecheck docs
	$(BIN)/pytest

chaos: venv services
	$(BIN)/python -m tests.chaos.run

SOAK_MINUTES ?= 30
SOAK_RATE ?= 100
soak: venv services
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m tests.chaos.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)

demo: venv services
	$(BIN)/cqrskit doctor
	$(BIN)/python -m examples.shop.demo

# The benchmarks' extra (matplotlib, for the charts), installed once per pyproject.toml.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

# Results in bench/results/: one JSON and chart per benchmark, and the suite's summary.
bench: venv services $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
