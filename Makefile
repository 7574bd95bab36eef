# One command to run the example project, one to run the tests:
#
#   make run     # http://127.0.0.1:8000/  (HOST=... PORT=... to change)
#   make test    # the whole test suite (PYTEST_ARGS=... to pass options)
#   make bench   # benchmark against bare aiortc and FastRTC (BENCH_ARGS=--full for the long run)
#   make lint    # ruff check, ruff format --check, mypy (strict) and lint-imports (layers)
#
# Both create .venv (python3 -m venv) and install the package with its test
# extras on first use; later runs reinstall only when pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?= --quick

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.bench-installed
FASTRTC_VENV := bench/.venv-fastrtc

LINT_STAMP := $(VENV)/.lint-installed

.PHONY: run test install migrate clean bench lint

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

$(LINT_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $@

lint: $(LINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $@

# FastRTC gets its own environment (never a dependency of the package); if it
# cannot be installed the benchmark marks it "not available" and goes on.
$(FASTRTC_VENV)/.installed: bench/requirements-fastrtc.txt
	-$(PYTHON) -m venv $(FASTRTC_VENV) && \
	  $(FASTRTC_VENV)/bin/python -m pip install --quiet -r bench/requirements-fastrtc.txt && \
	  touch $@

bench: $(BENCH_STAMP) $(FASTRTC_VENV)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info example.sqlite3
