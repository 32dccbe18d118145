# Two commands matter: `make run` and `make test`. Everything else helps them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The browser tests drive Debian's Chromium: Playwright's own browser download is
# never used. Only `make test` needs it; `make run` does not.
CHROMIUM := /usr/bin/chromium
# Root installs packages directly; anyone else goes through sudo.
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET  := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test test-failover lint bench bench-slow bench-queue bench-jobs bench-burst bench-checkins flows browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[dev]'
	touch $@

# The binary is its own stamp: installed once, then left alone. DejaVu gives
# screenshots readable text.
$(CHROMIUM):
	$(APT_GET) update
	$(APT_GET) install -y --no-install-recommends chromium fonts-dejavu-core

browser: $(CHROMIUM)

run: $(STAMP)
	$(BIN)/helpline serve

# The tests run on PYTEST_WORKERS processes (pytest-xdist), one per core: the tests that
# wait on subprocesses leave the cores to the others, and more workers than cores only
# slows every command a test starts. --dist loadgroup runs the tests that measure
# figures (xdist_group "measured") on one worker, one after another.
PYTEST_WORKERS ?= 2

test: $(STAMP) $(CHROMIUM)
	$(BIN)/helpline flows check
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# Part of `make test` too: Redis failover and two webs with three workers, real processes,
# with the figures they measure.
test-failover: $(STAMP)
	$(BIN)/pytest tests/test_failover.py tests/test_scale_out.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/webhooks.py

bench-slow: $(STAMP)
	$(BIN)/python bench/slow_clients.py

bench-queue: $(STAMP)
	$(BIN)/python bench/callback_queue.py

bench-jobs: $(STAMP)
	$(BIN)/python bench/jobs.py

bench-burst: $(STAMP)
	$(BIN)/python bench/burst.py

bench-checkins: $(STAMP)
	$(BIN)/python bench/checkins.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis test-output
