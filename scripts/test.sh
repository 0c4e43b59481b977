#!/usr/bin/env bash
# Install everything the tests need into .venv; check import contracts, lint, formatting, types and dead code; run
# the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests drive Debian's chromium (no browser download): install it when missing and we may.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
scripts/setup.sh serve,milvus,train,dev
.venv/bin/lint-imports
.venv/bin/ruff check --no-cache .
.venv/bin/ruff format --no-cache --check .
.venv/bin/mypy --strict common index service cli
.venv/bin/mypy model training
.venv/bin/vulture
.venv/bin/python -m pytest "$@"
