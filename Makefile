# Set-up lives here: each target creates .venv and installs what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-chain test system-deps bench clean

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

bench: $(STAMP) system-deps
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .edge-demo build dist *.egg-info
