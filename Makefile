# designrun — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export FLASK_APP := designrun

.PHONY: help install run test test-sqlite test-pg tools lint fmt migrate bench lock clean

help: ## List the targets
	@grep -hE '^[a-z][a-z0-9_-]*:.*## ' $(MAKEFILE_LIST) | sed 's/\$$(PORT)/$(PORT)/g' \
		| awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: setup.cfg pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

install: $(BIN)/.installed ## Create .venv and install designrun with its test tools (pinned)

run: install ## Install, apply migrations and serve on http://127.0.0.1:$(PORT) (SQLite, local storage)
	$(BIN)/flask db upgrade
	PORT=$(PORT) $(BIN)/gunicorn wsgi:app

test: install tools lint test-sqlite ## Install, lint, run the suite on SQLite (and on PostgreSQL when TEST_DATABASE_URL is set)
	@if [ -n "$$TEST_DATABASE_URL" ]; then $(MAKE) --no-print-directory test-pg; fi

test-sqlite: install tools ## Run the suite on SQLite only (no lint)
	env -u TEST_DATABASE_URL $(BIN)/pytest -q -n 2

test-pg: install tools ## Run the suite on a fresh PostgreSQL database (TEST_DATABASE_URL, default 127.0.0.1:5432)
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} $(BIN)/pytest -q -n 2

# nginx (Debian's package) is for the multi-host test (tests/ops/test_multihost.py), which starts
# its own nginx on loopback with a temporary prefix, never the system one; chromium for tests/web.
tools: ## Install the system tools the tests use (curl, chromium, nginx), when missing (Debian/Ubuntu)
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy designrun

fmt: install ## Format and auto-fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install ## Apply database migrations (flask db upgrade)
	$(BIN)/flask db upgrade

bench: install ## Ingestion and read benchmark against the storage ceiling (bench/ingest.py; needs wrk)
	@command -v wrk >/dev/null || { echo "bench: installing wrk (Debian package)"; apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/ingest.py

lock: ## Re-pin every dependency into requirements.lock from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^designrun' > requirements.lock

clean: ## Remove the virtualenv and caches (instance/ is kept)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
