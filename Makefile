# Persona: `make demo` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
PY := .venv/bin/python
PERSONA := .venv/bin/persona
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1

.DEFAULT_GOAL := help
.PHONY: help env services demo test test-slow test-all test-fast lint bench ui clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

env: ## Create or refresh .venv from uv.lock (installs uv if missing)
	@bash scripts/bootstrap.sh

services: ## Install what the integration tests start (redis-server, PostgreSQL, chromium) if missing
	@bash scripts/install-services.sh

demo: env ## Run the whole pipeline on synthetic data (FRESH=1 replaces a previous run's data dir)
	@$(PERSONA) demo $(if $(FRESH),--fresh)

# Test files are spread over this many processes (pytest-xdist, whole files per process so module
# fixtures are built once); the suite is mostly single-threaded Python, so 2 workers use both CI cores.
TEST_WORKERS ?= 2

XDIST = $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

test: env services ## Run every test tier (code, data, model, service) but the `slow` tests; TEST_WORKERS=1: one process
	@$(PY) -m pytest -m "not slow" $(XDIST)

test-slow: env services ## Run the `slow` tests (Spark, schemathesis, real datasets, server restarts); CI runs them after `make test`
	@$(PY) -m pytest -m slow $(XDIST)

test-all: test test-slow ## Both: what CI runs

test-fast: env ## Run the tests that start no servers
	@$(PY) -m pytest -m "not integration and not slow"

lint: env ## ruff
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

bench: env services ## Measure throughput, latency and memory; writes BENCHMARKS.md
	@$(PY) -m bench.run

ui: env ## MLflow UI on http://127.0.0.1:5000
	@MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --host 127.0.0.1 --port 5000 \
		--backend-store-uri "sqlite:///$(CURDIR)/data/mlflow/mlflow.db"

clean: ## Remove generated data, caches and the virtual environment
	rm -rf data .venv .pytest_cache .ruff_cache bench/results/*.tmp
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
