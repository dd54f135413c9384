# Set-up lives here: each target creates .venv and installs what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-store demo-chain test system-deps bench clean dist model fuzz

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Run the chain on this machine: the hub with its embedded MQTT broker on a free port and two
## simulated stores whose devices degrade; alerts on the regional feed and the fleet view
## (state in .edge-demo-chain; Ctrl-C stops everything).
demo: $(STAMP)
	$(BIN)/edge-hub demo

## Run one simulated store with a live status view (the agent on its embedded default).
demo-store: $(STAMP)
	$(BIN)/edge-agent demo

## The chain demo under its earlier name (same as `make demo`).
demo-chain: demo

## Install the Debian packages the integration tests use (mosquitto, snmp tools), if missing.
system-deps:
	bash scripts/system-deps.sh

## Run the whole test suite.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

## Run the whole suite RUNS times (default 5), then RUNS times under `stress-ng --cpu 2`
## (installed if missing), printing each run's verdict and duration (scripts/test-stress.sh).
## MODE=plain or MODE=stress runs only one of the two halves (default both).
RUNS ?= 5
MODE ?= both
.PHONY: test-stress
test-stress: $(STAMP) system-deps
	bash scripts/test-stress.sh $(RUNS) $(MODE)

## Retrain the health model on the simulated fleet: models/device_health.{onnx,card.json}, the
## copies in edge_agent/health/model/, and docs/model.md (about 4 CPU-minutes, plus about 15
## minutes on a loaded 2-core machine to replay the held-out fleet through `edge-agent replay`
## for the targets and the baselines).
model: $(STAMP)
	$(BIN)/pip install -q -e '.[train]'
	$(BIN)/python -m models.train

## Fuzz every parser of outside input with atheris (fuzz/): FUZZ_RUNS executions per target
## (default 1,000,000), FUZZ_JOBS targets at a time (default 1: the machine has 2 cores). A
## campaign resumes where the last one stopped (fuzz/.work/); FUZZ_SECONDS bounds each target's
## time (the PostgreSQL batch-writer target runs about 27-60 executions a second here: a million
## takes hours). Not part of `make test`, which replays the corpus the campaigns keep
## (tests/test_fuzz_corpus.py).
FUZZ_RUNS ?= 1000000
FUZZ_JOBS ?= 1
FUZZ_SECONDS ?=
fuzz: $(STAMP)
	$(BIN)/pip install -q -e '.[fuzz]'
	$(BIN)/python fuzz/campaign.py --resume --runs $(FUZZ_RUNS) --jobs $(FUZZ_JOBS) \
		$(if $(FUZZ_SECONDS),--max-seconds $(FUZZ_SECONDS))

bench: $(STAMP) system-deps
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

## Build the wheel and the sdist into dist/ (offline: setuptools and wheel come from the dev extra).
dist: $(STAMP)
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .
	$(BIN)/python -c "from setuptools import build_meta as b; b.build_sdist('dist')"

clean:
	rm -rf $(VENV) .edge-demo .edge-demo-chain build dist *.egg-info

## The long versions of the outage tests: the ticket connector down the issue's full 10 minutes
## (make test runs 4), beside the rest of the suite.
.PHONY: test-long
test-long: $(STAMP) system-deps
	EDGE_TEST_CONNECTOR_OUTAGE_S=600 $(BIN)/python -m pytest -q tests/e2e/test_tickets_outage.py
