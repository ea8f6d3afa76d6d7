# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## make run: install, migrate, add demo data to an empty database, serve on 127.0.0.1:8000
run: install
	$(BIN)/hotline db upgrade
	$(BIN)/hotline seed-demo --if-empty
	$(BIN)/hotline serve --no-migrate

## make test: install with the test extras, then run the whole suite
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/queue_bench.py
	$(BIN)/python benchmarks/import_bench.py
	$(BIN)/python benchmarks/turn_bench.py
	$(BIN)/python benchmarks/call_path.py
	$(BIN)/python benchmarks/outbox_crash.py
	$(BIN)/python benchmarks/wechat_bench.py
	$(BIN)/python benchmarks/sip_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

## make compare-rasa (optional, never part of `make test`): train a real Rasa server on nlu/data
## and benchmark it next to the embedded parser; see nlu/rasa/README.md.
RASA_VENV ?= ../rasa-venv
RASA_PORT ?= 5005

.PHONY: compare-rasa
compare-rasa: install
	RASA_VENV=$(RASA_VENV) RASA_PORT=$(RASA_PORT) PYTHON=$(BIN)/python bash nlu/rasa/compare.sh
