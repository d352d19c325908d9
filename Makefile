# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs,
# once; running again skips the install unless pyproject.toml or the lock file changed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c requirements/lock.txt
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
# Tests never touch the network.
TEST_ENV := HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1
# The documentation site (mkdocs.yml); --strict fails on a broken link or reference.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
LINTED := src tests benchmarks docs/hooks

.PHONY: demo test test-heavy docs loadtest lint format install clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml requirements/lock.txt | $(BIN)/python
	@echo "installing medclf and pinned dependencies into $(VENV) (first time: a few minutes)"
	$(PIP) -e .
	@touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(PIP) -e '.[dev]'
	@touch $@

install: $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/medclf demo

test: $(DEV_STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports --no-cache --no-logo
	$(TEST_ENV) $(MKDOCS)
	$(TEST_ENV) $(BIN)/pytest

# The exports of the largest architectures, minute-long end-to-end tests, whole INT8 exports,
# the whole release path, the registry refusals and a real mlflow server, the slim serving
# install (from the package registry), a DVC pipeline, the monitor on a service's audit log
# and on labels, a hostile dataset through data check and training (about 36 minutes on 2
# cores); CI runs them too.
test-heavy: $(DEV_STAMP)
	$(TEST_ENV) $(BIN)/pytest -m heavy

# A bounded locust run (8 users, 20 s, 127.0.0.1 only) against medclf serve: p50/p95/p99,
# requests/s and failures. LOADTEST_ARGS="--model RUN --images DIR --users 16 --time 60s".
loadtest: $(DEV_STAMP)
	$(TEST_ENV) $(BIN)/python benchmarks/loadtest.py $(LOADTEST_ARGS)

# The documentation site into site/ (open site/index.html, or serve it: .venv/bin/mkdocs serve).
docs: $(DEV_STAMP)
	$(TEST_ENV) $(MKDOCS)
	@echo "documentation site: site/index.html"

format: $(DEV_STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
