#!/usr/bin/env bash
# One call on a GPU machine (under 8 minutes): install what is missing, then bench/gpu.py; the table comes last.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[export]" 2>/dev/null || python3 -m pip install -q -e .
python3 -m pip install -q onnxruntime-gpu 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total --format=csv || true
PYTHONUNBUFFERED=1 timeout 450 python3 bench/gpu.py --seconds "${SECONDS_PER_CASE:-8}" "$@"
