# Development entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)

.PHONY: install test test-unit demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
	touch $@

# The whole suite: unit tests, real HTTP over TLS, and end-to-end runs of real Airflow processes.
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Only the tests that start no Airflow process.
test-unit: install
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .demo .pytest_cache build *.egg-info
