#!/usr/bin/env bash
# Create .venv (if missing) and install the project with the given extras, e.g. `scripts/setup.sh serve,train,dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-serve,train,dev}"
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
