# Two commands on a fresh machine:
#   make run    the main job: deploy the pinned image to the fleet (this machine if none)
#   make test   every test, against a real Docker engine and a real SSH test fleet
# More: make dry | demo | report | samples | rollout | bench | lint | unit
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run dry test unit lint engine setup demo fleet-down report samples rollout bench clean mutation mutation-report

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

engine:
	bash scripts/setup-engine

setup: $(STAMP) engine

run: setup
	$(BIN)/python -m sagefleet.main

samples: $(STAMP)
	$(BIN)/python scripts/render-samples

report: setup
	$(BIN)/python -m sagefleet.report.gather

demo: setup
	bash scripts/setup-fleet-images --build
	$(BIN)/python scripts/demo

bench: setup
	bash scripts/setup-fleet-images --build
	$(BIN)/python bench/run.py

rollout: setup
	$(BIN)/python -m sagefleet.rollout

dry: setup
	$(BIN)/python -m sagefleet.main -- --dry --diff

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: setup
	bash scripts/setup-fleet-images --build
	bash scripts/setup-registry
	$(BIN)/ruff check .
	# Two processes: the unit tests never share a process with the fleet's in-process
	# pyinfra, gevent and SSH state (an order-dependent hang was seen when they did).
	SAGEFLEET_REQUIRE_ENGINE=1 $(BIN)/pytest -q -ra tests/unit
	SAGEFLEET_REQUIRE_ENGINE=1 $(BIN)/pytest -q -ra tests/fleet tests/integration

# Mutation testing of the modules that decide (unit tests only; not in CI: see
# docs/testing.md for its run time). MUTATION_WORKERS=1 by default (shared machine).
mutation: $(STAMP)
	$(BIN)/pip install -q 'mutmut==3.8.1'
	$(BIN)/python scripts/mutation run
	$(BIN)/python scripts/mutation report

mutation-report: $(STAMP)
	$(BIN)/python scripts/mutation report --survivors

clean:
	rm -rf $(VENV) reports mutants
