# Two entry points on a fresh Linux machine with Python 3.11: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: serve test setup setup-dev lint lock clean

# The runtime dependencies at the versions the image ships (requirements.lock, hash-checked), then the package.
$(VENV)/.base: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.lock
	$(PIP) install -e ".[embedded]"
	touch $@

# torch comes first and pinned: 2.13.0 is the CPU build; a looser pin would pull a multi-GB CUDA build.
$(VENV)/.dev: $(VENV)/.base
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[train,dev,loadtest,bench]"
	touch $@

setup: $(VENV)/.base
setup-dev: $(VENV)/.dev

## Start an embedded Triton on model_repository/ and the gateway on http://127.0.0.1:8000
serve: setup
	$(VENV)/bin/pd-gateway serve

## Lint and type-check, then run the whole test suite (unit + integration against a real Triton and Redis)
test: lint
	./scripts/system-deps.sh
	$(PY) -m pytest

## ruff (lint + format) and mypy must stay clean; `make test` runs this first
lint: setup-dev
	$(VENV)/bin/ruff check gateway export tests loadtest
	$(VENV)/bin/ruff format --check gateway export tests loadtest
	$(VENV)/bin/mypy gateway

## requirements.lock: the runtime dependencies (+ the build backend), pinned with hashes, for the image and CI.
## Re-run after changing pyproject.toml's dependencies; pins already in the file are kept unless --upgrade.
lock: setup-dev
	printf 'setuptools>=68\n' | $(VENV)/bin/uv pip compile pyproject.toml - --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --generate-hashes --no-emit-index-url \
		--custom-compile-command "make lock" -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
