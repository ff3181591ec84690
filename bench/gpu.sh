#!/usr/bin/env bash
# One call on a lent GPU machine (about 8 minutes): the CUDA-only tests, then bench/gpu.py; the table comes last.
#
# The lent machines are offline and have torch, torchvision, onnx, onnxruntime, pillow, contourpy, safetensors,
# tqdm and pytest, but not pycocotools. Before the call, on this machine (once; .whl/ is git-ignored):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pycocotools
# and run this script with carry [".whl"]. Elsewhere (a GPU box with internet) `pip install -e ".[test]"` suffices.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
python3 -c "import fastsam" 2>/dev/null || export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
out="${OUT:-bench/results}"
mkdir -p "$out"
PYTHONUNBUFFERED=1 timeout 120 python3 -m pytest -q -p no:cacheprovider -k cuda \
    tests/test_engine.py tests/test_transforms.py tests/test_text.py 2>&1 | tail -n 15 | tee "$out/gpu_tests.log"
PYTHONUNBUFFERED=1 timeout 400 python3 bench/gpu.py --seconds "${SECONDS_PER_CASE:-6}" "$@"
cp bench/results/gpu.json "$out/" 2>/dev/null || true
