# One entry point for people and CI. `make demo` and `make test` are the README's two commands.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo up down status test check lint typecheck unit integration bench-serving bench-cache bench-router clean-run

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m local_stack stack up --demo

up: setup
	$(PY) -m local_stack stack up --detach

down:
	$(PY) -m local_stack stack down

status:
	$(PY) -m local_stack stack status

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck:
	$(PY) -m mypy

unit:
	$(PY) -m pytest tests/unit -q

integration:
	$(PY) -m pytest tests/integration -q

check: lint typecheck

test: setup check
	$(PY) -m pytest -q -ra

bench-serving: setup
	$(PY) benchmarks/serving/run.py

bench-cache: setup
	$(PY) benchmarks/cache/run.py

bench-router: setup
	$(PY) benchmarks/router/run.py

clean-run:
	rm -rf .run
