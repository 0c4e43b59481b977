#!/usr/bin/env bash
# Install everything the tests need into .venv; check import contracts, lint, formatting, types and dead code; run
# the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh serve,train,dev
.venv/bin/lint-imports
.venv/bin/ruff check --no-cache .
.venv/bin/ruff format --no-cache --check .
.venv/bin/mypy --strict common index service cli
.venv/bin/mypy model training
.venv/bin/vulture
.venv/bin/python -m pytest "$@"
