#!/usr/bin/env bash
# Install the project into .venv and run the one-command demo (synthetic data, tiny training, ONNX, service).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh serve,train
exec .venv/bin/vireid demo "$@"
