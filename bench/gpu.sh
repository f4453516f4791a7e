#!/usr/bin/env bash
# The speed comparison on one GPU, timed with CUDA events; sized to finish within 5 minutes
# (3 A/B repeats of 3 epochs per stage on MNIST, then a conv pair), then bench/sweep.py.
# usage: bash bench/gpu.sh [--data-dir ../shared/data] [--epochs 3] [--repeats 3] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda)"
python bench/gpu_speed.py "$@"
# A sweep's students in lockstep against one after another (device auto picks the GPU): small
# models on a GPU are bound by kernel launches, which lockstep shares.
python bench/sweep.py --cli-sample 1
