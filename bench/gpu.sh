#!/usr/bin/env bash
# The speed comparison on one GPU, timed with CUDA events; sized to finish within 5 minutes
# (3 A/B repeats of 3 epochs per stage on MNIST, then a conv pair).
# usage: bash bench/gpu.sh [--data-dir ../shared/data] [--epochs 3] [--repeats 3] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda)"
exec python bench/gpu_speed.py "$@"
