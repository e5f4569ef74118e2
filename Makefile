# Xiaoxiang real-time order tracking. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTHON ?= python3

.DEFAULT_GOAL := help
.PHONY: help run test lint format migrate seed history backtest bench bench-data soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

migrate: $(VENV)/.installed ## Apply database migrations
	$(PY) manage.py migrate --noinput

seed: migrate ## Load the demo data (idempotent): rider1 for you on /rider/, rider2..4 for the simulator
	$(PY) manage.py seed_demo --riders 4

history: seed ## Write simulated delivery history if missing (idempotent) and refit the ETA model
	$(PY) manage.py simulate --history 120 --speed $${SIM_SPEED:-3}

backtest: history ## Print the ETA model's error on held-out deliveries beside the naive baseline
	$(PY) manage.py eta_backtest

run: history ## Start the whole product (embedded default, or nginx + gunicorn + Daphne + Celery when DATABASE_URL/REDIS_URL are set)
	$(PY) manage.py collectstatic --noinput -v0
	@echo "Open http://127.0.0.1:$(PORT)/  (customer1, warehouse1, rider1, admin; password xiaoxiang-demo)"
	@if [ -n "$$REDIS_URL" ]; then \
		PORT=$(PORT) WEB_PORT=$${WEB_PORT:-$$(($(PORT) + 1))} WS_PORT=$${WS_PORT:-$$(($(PORT) + 2))} \
			SIM_BASE_URL=http://127.0.0.1:$(PORT) $(VENV)/bin/honcho -f deploy/Procfile start; \
	else \
		PORT=$(PORT) SIM_BASE_URL=http://127.0.0.1:$(PORT) $(VENV)/bin/honcho -f deploy/Procfile.embedded start; \
	fi

lint: $(VENV)/.installed ## ruff, the import contracts (pyproject.toml) and the module-cycle check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/test_architecture.py

format: $(VENV)/.installed ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## Lint, then run the whole pytest suite
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed ## Run the benchmarks on the Procfile topology (needs PostgreSQL and Redis: DATABASE_URL, REDIS_URL)
	@for script in bench/ingest.py bench/fanout.py bench/watchers.py; do echo "== $$script"; $(PY) $$script || exit 1; done

soak: $(VENV)/.installed ## 30-minute soak of the Procfile topology under light traffic: RSS growth of every process (SOAK_SECONDS; DATABASE_URL, REDIS_URL)
	$(PY) bench/soak.py

bench-data: $(VENV)/.installed ## Tracking data at 20 million rows, plain vs partitioned (PostgreSQL with pg_partman; ~15 min, ~12 GB)
	$(PY) bench/tracking_data.py

clean: ## Remove the virtualenv, the SQLite database and collected static files
	rm -rf $(VENV) db.sqlite3 staticfiles
