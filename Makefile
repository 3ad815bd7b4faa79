# Godwit developer entry points. CI (.ci/run) runs `make test`, then `make bench QUICK=1`.
#
# Everything runs from the repository's own virtualenv in .venv, which the
# `venv` target builds from scratch on a fresh clone and refreshes whenever
# setup.cfg or pyproject.toml change.

SHELL := /bin/bash

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := PYTHONUNBUFFERED=1 $(VENV)/bin/pytest
RUFF   := $(VENV)/bin/ruff
STAMP  := $(VENV)/.installed

DEMO_ARGS ?=
QUICK     ?=

.DEFAULT_GOAL := help
.PHONY: help venv services demo test unit functional examples lint genconfig bench clean

# List the targets.
help:
	@echo "make demo        boot servers on fake hosts and live-migrate one (DEMO_ARGS=...)"
	@echo "make test        ruff + every test, starting RabbitMQ/PostgreSQL if needed (CI)"
	@echo "make unit        unit tests only (no services)"
	@echo "make functional  functional tests, starting RabbitMQ/PostgreSQL if needed"
	@echo "make examples    examples/ against Godwit installed as a user installs it"
	@echo "make lint        ruff check"
	@echo "make genconfig   regenerate etc/godwit/godwit.conf.sample"
	@echo "make bench       run the benchmarks (QUICK=1 for a short run)"
	@echo "make clean       remove .venv, build artefacts and .state/"

# (internal) Create .venv and install the project with its test extras.
venv: $(STAMP)

# The stamp is newer than the packaging files once the install has succeeded,
# so a re-run with nothing changed does nothing.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,host]'
	touch $@

# (internal) Make sure RabbitMQ and PostgreSQL are up on 127.0.0.1.
services:
	tools/ensure-services.sh

# Boot servers on fake hosts in one process and live-migrate one.
demo: venv
	$(PY) -m godwit.cmd.demo $(DEMO_ARGS)

# Lint, then the whole test suite against the real services (what CI runs).
test: venv
	$(RUFF) check .
	tools/ensure-services.sh
	tools/ensure-host-plumbing.sh
	tools/ensure-libvirt.sh
	tools/ensure-ssh.sh
	$(PYTEST) -q tests
	PYTHON=$(PYTHON) tools/run-examples.sh

# Unit tests only; needs no services.
unit: venv
	$(PYTEST) -q tests/unit

# Functional tests against the real RabbitMQ and PostgreSQL.
functional: venv
	tools/ensure-services.sh
	tools/ensure-host-plumbing.sh
	tools/ensure-libvirt.sh
	tools/ensure-ssh.sh
	$(PYTEST) -q tests/functional tests/real

# The test kit's examples (examples/test_kit_example), in a fresh virtualenv
# with Godwit installed from this tree, not editable: only the public kit.
# The process cloud's example needs RabbitMQ.
examples:
	tools/ensure-services.sh
	PYTHON=$(PYTHON) tools/run-examples.sh

# Static checks.
lint: venv
	$(RUFF) check .

# Regenerate the sample configuration file from the registered options.
genconfig: venv
	$(VENV)/bin/oslo-config-generator --config-file etc/godwit/godwit-config-generator.conf

# Benchmarks (bench/run.py); QUICK=1 passes --quick. The real-hypervisor,
# cold-transfer and continuity sections start their own libvirt daemons, sshd
# and network namespaces: only the packages are needed.
bench: venv
	tools/ensure-services.sh
	tools/ensure-host-plumbing.sh
	tools/ensure-libvirt.sh
	tools/ensure-ssh.sh
	$(PY) -m bench.run $(if $(QUICK),--quick)

# Remove the virtualenv, build artefacts, caches and local state.
clean:
	rm -rf $(VENV) build dist *.egg-info .state .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
