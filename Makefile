# One command to run the example project, one to run the tests:
#
#   make run     # http://127.0.0.1:8000/  (HOST=... PORT=... to change)
#   make test    # the whole test suite (PYTEST_ARGS=... to pass options)
#
# Both create .venv (python3 -m venv) and install the package with its test
# extras on first use; later runs reinstall only when pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/daphne -b $(HOST) -p $(PORT) example_project.asgi:application

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info example.sqlite3
