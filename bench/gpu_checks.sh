#!/usr/bin/env bash
# The GPU checks of fused trials (sweep.pack), in one go, most important first:
#   1. each member of a fused pack on CUDA matches the same trial run alone (tests/test_fused.py -k gpu);
#   2. trial-epochs/s, K fused vs the same K trials one after another (bench/fused_trials.py), SGD fp32;
#   3. the same with Adam, with bf16, and in the NCHW layout (the default is channels_last).
# Needs a CUDA GPU and CIFAR10_ROOT with at least 11,000 training images (10,000 + 1,000 held out).
# Runs from a source checkout without installing it (it imports torch, numpy, scikit-learn, pillow, rich,
# omegaconf and pytest, no Optuna, MLflow or Hydra), e.g.  bench/gpu_checks.sh 2>&1 | tee gpu_checks.log
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

python - <<'EOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu_checks: no CUDA GPU visible to torch; run this on a GPU machine")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
EOF

echo "== 1. fused packs match each trial alone, on the GPU"
python -m pytest -q -p no:cacheprovider tests/test_fused.py -k gpu
echo "== 2. fused vs serial, SGD fp32"
python bench/fused_trials.py --images 10000 --epochs 2 --repeat 2
echo "== 3a. fused vs serial, Adam fp32"
python bench/fused_trials.py --images 10000 --epochs 2 --repeat 2 --optimizer adam
echo "== 3b. fused vs serial, SGD bf16"
python bench/fused_trials.py --images 10000 --epochs 2 --repeat 2 --precision bf16
echo "== 3c. fused vs serial, SGD fp32, NCHW"
python bench/fused_trials.py --images 10000 --epochs 2 --repeat 2 --no-channels-last
