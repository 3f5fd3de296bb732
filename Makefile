# Certwright: `make run` to start, `make test` to test. `make help` lists everything.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
PORT ?= 5000
# Defaults as declared in app/settings.py (SETTINGS); the environment overrides them.
CW_WORKER_PROCESSES ?= 2
CW_WORKER_THREADS ?= 4

.DEFAULT_GOAL := help
.PHONY: help run test check venv migrate bootstrap worker scheduler web lint typecheck browser tools packages clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create the virtualenv and install the pinned requirements

migrate: venv ## Bring the database schema up to date (DATABASE_URL or instance/certwright.db)
	$(FLASK) db upgrade

bootstrap: migrate ## Create the first MRAO and organization (CW_ADMIN_LOGIN / CW_ADMIN_PASSWORD)
	$(FLASK) bootstrap

run: bootstrap ## Set everything up and serve the console on http://127.0.0.1:$(PORT)
	@echo "Certwright console: http://127.0.0.1:$(PORT)/  (Ctrl-C to stop)"
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

web: migrate ## Scale-out: web processes only (needs BROKER_URL)
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

worker: venv ## Scale-out: a dramatiq worker process (needs BROKER_URL)
	dramatiq_worker_timeout=$${dramatiq_worker_timeout:-200} \
	$(BIN)/dramatiq app.actors --processes $(CW_WORKER_PROCESSES) --threads $(CW_WORKER_THREADS)

scheduler: venv ## Scale-out: the scheduler process (needs BROKER_URL)
	$(FLASK) scheduler

browser: ## Install Debian's Chromium for the browser tests (when missing)
	@$(MAKE) --no-print-directory packages WANT=chromium

tools: ## Install the benchmarks' reference tools when missing: wrk (OCSP load), nmap, cfssl
	@$(MAKE) --no-print-directory packages WANT="wrk nmap cfssl:golang-cfssl"

# WANT: commands to have, each "command" or "command:debian-package" when the names differ.
packages:
	@missing=""; for want in $(WANT); do command -v $${want%%:*} >/dev/null 2>&1 || missing="$$missing $${want#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "Missing:$$missing and not root: the tests that need them skip (CI=true makes them fail)"; fi; fi

test: venv ## Set up and run the whole test suite (unit and integration on all cores, then the rest)
	@$(MAKE) --no-print-directory packages WANT="chromium wrk nmap cfssl:golang-cfssl systemd-analyze:systemd certbot lego knotd:knot pebble nft:nftables ip:iproute2 redis-server soffice:libreoffice-calc-nogui"
	$(BIN)/python -m pytest -n auto tests/unit tests/integration $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/cli tests/services tests/e2e $(PYTEST_ARGS)

check: lint ## The fast loop: lint, then the unit and integration tiers on SQLite (all cores)
	$(BIN)/python -m pytest -n auto tests/unit tests/integration -q $(PYTEST_ARGS)

lint: venv ## ruff check + format check, mypy --strict on the pure packages, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

clean: ## Remove the virtualenv and caches (keeps instance/ with your data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
