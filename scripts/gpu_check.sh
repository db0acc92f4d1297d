#!/usr/bin/env bash
# The GPU path in one command (at most ~8 minutes on one GPU): `bench perf` at paper size
# (harness ÷ bare PyTorch img/s, AMP on, target >= 0.95), the whole grid at paper size on
# synthetic faces (one short epoch, --gpus-per-trial 0.25, every trial must finish), and one
# table of each method's img/s and peak GPU memory. Exit status 0 only if everything passed.
#
#   scripts/gpu_check.sh              # on the GPU machine
#   scripts/gpu_check.sh --cpu-tiny   # the same logic at tiny sizes on a CPU (the test suite)
#
# Options after these go to scripts/gpu_check.py (--results-dir DIR, --run-name NAME, --methods M).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
    echo "gpu_check: $PYTHON not found; run 'make install' first (or set PYTHON)" >&2
    exit 2
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "$PYTHON" scripts/gpu_check.py "$@"
