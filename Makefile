# Set-up lives here: each target creates .venv and installs what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-chain test system-deps bench clean dist model

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Run the agent on its embedded default (no hardware needed).
demo: $(STAMP)
	$(BIN)/edge-agent demo

## Run the chain on one machine: embedded broker, hub and two store agents (Ctrl-C stops).
demo-chain: $(STAMP)
	$(BIN)/edge-hub demo

## Install the Debian packages the integration tests use (mosquitto, snmp tools), if missing.
system-deps:
	bash scripts/system-deps.sh

## Run the whole test suite.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

## Retrain the health model on the simulated fleet: models/device_health.{onnx,card.json}, the
## copies in edge_agent/health/model/, and docs/model.md (about a minute on 2 cores).
model: $(STAMP)
	$(BIN)/pip install -q -e '.[train]'
	$(BIN)/python -m models.train

bench: $(STAMP) system-deps
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

## Build the wheel and the sdist into dist/ (offline: setuptools and wheel come from the dev extra).
dist: $(STAMP)
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .
	$(BIN)/python -c "from setuptools import build_meta as b; b.build_sdist('dist')"

clean:
	rm -rf $(VENV) .edge-demo build dist *.egg-info
