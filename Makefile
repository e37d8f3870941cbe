# Two commands do all set-up: `make demo` and `make test`. Each builds .venv when missing or stale.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test lint typecheck contracts unit bench contract clean constraints

# Installs exactly the versions of constraints.txt (those CI passed with); pyproject keeps the ranges.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

# Re-pin constraints.txt to what the working .venv holds (after changing pyproject.toml).
constraints: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -vE '^(setuptools|wheel)=='; \
	} > constraints.txt.new
	mv constraints.txt.new constraints.txt

demo: $(STAMP)
	$(BIN)/piguard demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q

# pytest writes which entry points each test reached; a clause counts only through such tests.
test: lint typecheck contracts unit
	$(BIN)/piguard policy coverage --quiet --evidence .pytest-clause-evidence.json \
		--known-gaps docs/coverage-gaps.txt

# bench/api.py drives the servers with wrk (Debian's wrk), installed when missing.
bench: $(STAMP)
	command -v wrk >/dev/null 2>&1 || $(SUDO) apt-get install -y wrk
	$(BIN)/python bench/decide.py
	$(BIN)/python bench/vault.py
	$(BIN)/python bench/api.py

# Schemathesis against a throwaway server, every check, 40 examples per operation, as a privacy
# officer, the account service and unauthenticated (tests/api/test_api_contract.py).
contract: $(STAMP)
	PIGUARD_CONTRACT_EXAMPLES=40 $(BIN)/pytest -q -p no:cacheprovider \
		tests/api/test_api_contract.py -k schemathesis

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .pytest-clause-evidence.json
