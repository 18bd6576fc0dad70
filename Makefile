# Archangel: the two commands (run, test) and the benchmark.
# Needs only Python 3.11+ and make; everything else is installed into .venv.

PYTHON ?= python3
# Another interpreter or virtualenv: `make bench PYTHON=python3.11 VENV=.venv-other` (docs/benchmarks.md).
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export PORT

.PHONY: run test bench lint install install-dev clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Archangel needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: set up and start the whole system (web on :$(PORT), worker, beat) with demo data; Ctrl-C stops it all.
# The demo's providers point at the local provider sandbox, so loopback provider URLs are allowed here.
run: export ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS ?= true
run: export ARCHANGEL_PLAIN_HTTP_HOSTS ?= 127.0.0.1,localhost
run: install
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0
	$(BIN)/python manage.py bootstrap_demo
	$(BIN)/python manage.py run_stack --port $(PORT)

## test: lint, migration check and the whole test suite.
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# Models against migrations: no database needed (the embedded one is used, so an absent
	@# PostgreSQL database named by DATABASE_URL does not warn).
	DATABASE_URL= $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest

## bench: the benchmark scenarios against PostgreSQL (see docs/benchmarks.md). The interpreter counts:
## production's image runs CPython built with PGO and LTO; measure on such a build, e.g.
## `make bench PYTHON=/usr/bin/python3.11 VENV=.venv-pgo` on Debian (docs/benchmarks.md, "Interpreter").
bench: install-dev
	$(BIN)/python bench/run.py

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var
