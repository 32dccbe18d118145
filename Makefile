# Two commands matter: `make run` and `make test`. Everything else helps them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-queue flows clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/helpline serve

test: $(STAMP)
	$(BIN)/helpline flows check
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/webhooks.py

bench-queue: $(STAMP)
	$(BIN)/python bench/callback_queue.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
