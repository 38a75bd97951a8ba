# One entry point for people and CI. VENV=/path/to/venv reuses an existing environment
# (e.g. `VENV=/opt/lal-venv make test`). STOP=1 stops the stack after `make test`.
VENV ?= .venv
VENV_ABS := $(abspath $(VENV))
PY := $(VENV_ABS)/bin/python
STAMP := $(VENV_ABS)/.lal-installed
STACK_ENV := var/stack/env
export VENV := $(VENV_ABS)

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: install up up-infra down status test test-unit bench clean

install: $(STAMP)

# Re-installs only when a requirements file is newer than the stamp.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3.11 -m venv $(VENV_ABS) || python3 -m venv $(VENV_ABS)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

up: install
	bash scripts/stack.sh up

up-infra: install
	bash scripts/stack.sh up --infra-only

down:
	bash scripts/stack.sh down

status:
	bash scripts/stack.sh status

# Unit, integration and end-to-end tests against the local stack (started when it is not answering).
test: install
	@if [ -f $(STACK_ENV) ] && (set -a; . $(STACK_ENV); $(PY) -c "import os, urllib.request, sys; urllib.request.urlopen(os.environ['LAL_API_URL'] + '/ready', timeout=5)") >/dev/null 2>&1; then \
		echo "[make] using the running stack ($(STACK_ENV))"; \
	else \
		bash scripts/stack.sh up; \
	fi
	rc=0; (set -a; . $(STACK_ENV); set +a; PATH="$(VENV_ABS)/bin:$$PATH" $(PY) -m pytest -q tests) || rc=$$?; \
	if [ "$(STOP)" = "1" ]; then bash scripts/stack.sh down; fi; \
	exit $$rc

test-unit: install
	PATH="$(VENV_ABS)/bin:$$PATH" $(PY) -m pytest -q tests/unit

# Benchmarks in bench/ (the running stack's env is used when there is one).
bench: install
	@set -a; [ -f $(STACK_ENV) ] && . $(STACK_ENV); set +a; \
	for script in bench/*.py; do echo "[bench] $$script"; $(PY) $$script; done

clean: down
	rm -rf var data/generated data/catalog models .pytest_cache .hypothesis .schemathesis
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
