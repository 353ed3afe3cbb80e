# The README's two commands are `make run` and `make test`; both install what they need first.
.PHONY: run test lint chaos bench clean help

VENV := .venv
PY := $(VENV)/bin/python

help:
	@echo "make run    start NATS, Valkey and all five services locally (Ctrl-C stops)"
	@echo "make test   install everything and run the test suite (real NATS, Valkey, HTTP)"
	@echo "make lint   ruff, mypy --strict and the import layers (lint-imports)"
	@echo "make bench  run the benchmarks in bench/ (figures beside their anchors)"
	@echo "make chaos  the large crash/restart rounds (slow)"

$(VENV)/.raaf-synced: pyproject.toml uv.lock scripts/bootstrap
	@./scripts/bootstrap

run: $(VENV)/.raaf-synced
	$(VENV)/bin/raaf up

test: $(VENV)/.raaf-synced
	$(VENV)/bin/pytest -q

lint: $(VENV)/.raaf-synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: $(VENV)/.raaf-synced
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

chaos: $(VENV)/.raaf-synced
	$(VENV)/bin/pytest -q -m chaos --run-chaos

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache var

# Deployment (docs/deploy.md): the image, and the k8s PrometheusRule generated from deploy/prometheus/alerts.yml.
.PHONY: image k8s-alerts
image:
	docker build -t raaf-streaming:$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) -t raaf-streaming:latest .

k8s-alerts: $(VENV)/.raaf-synced
	$(PY) scripts/sync-k8s-alerts
