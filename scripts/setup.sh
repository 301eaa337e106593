#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv, ready to run the workflow
# and the tests. Safe to run again: it only installs what is missing.
#
# Where no NVIDIA GPU is visible, the CPU build of torch is installed first, so that the
# `torch` requirement of the package is already satisfied and pip never downloads a
# multi-GB CUDA build onto a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip

if ! python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found, installing torch with CUDA support"
        python -m pip install --quiet "torch>=2.3"
    else
        echo "setup: no GPU found, installing the CPU build torch==${TORCH_CPU_VERSION}"
        python -m pip install --quiet "torch==${TORCH_CPU_VERSION}" \
            || python -m pip install --quiet "torch==${TORCH_CPU_VERSION}" --index-url https://download.pytorch.org/whl/cpu
    fi
fi

python -m pip install --quiet -e ".[test,slurm]"
echo "setup: ready ($(python -c 'import torch; print("torch", torch.__version__)'))"
