#!/usr/bin/env bash
# One call that checks the CUDA training path of the production-sized gw model (AMP, fused
# attention kernels, CPU/GPU agreement at step 0, DDP with more than one GPU); see
# benchmarks/gpu_check.py. On a machine without CUDA it runs its CPU part and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} timeout 300 "$PYTHON" benchmarks/gpu_check.py "$@"
