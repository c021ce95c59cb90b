#!/usr/bin/env bash
# Pack what bench/gpu_checks.sh needs on a lent GPU machine (torch, numpy, scikit-learn, pillow, rich and pytest
# there; no network, no CIFAR-10) into .gpukit/ (ignored by git): 1,200 training and 100 test images per class
# from $CIFAR10_ROOT (class folders) and the pure-Python packages it lacks (omegaconf, antlr4) from .venv.
# Then make one device run, carry [".gpukit"], timeout_s 540, with the command
#   export PYTHONPATH=$PWD/.gpukit/site CIFAR10_ROOT=$PWD/.gpukit/cifar10 SWEEPS_CACHE_DIR=/tmp/cache
#   set -o pipefail; bench/gpu_checks.sh 2>&1 | tee $OUT/gpu_checks.log
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CIFAR10_ROOT:?set CIFAR10_ROOT to a class-folder CIFAR-10 copy (train/<class>/, test/<class>/)}"
rm -rf .gpukit && mkdir -p .gpukit/site
for spec in train:1200 test:100; do
  split=${spec%%:*} n=${spec##*:}
  for class_dir in "$CIFAR10_ROOT/$split"/*/; do
    dest=.gpukit/cifar10/$split/$(basename "$class_dir")
    mkdir -p "$dest"
    mapfile -t images < <(find "$class_dir" -maxdepth 1 -type f -not -name '.*' | sort)
    cp -t "$dest" "${images[@]:0:$n}"
  done
done
site=$(.venv/bin/python -c 'import omegaconf, pathlib; print(pathlib.Path(omegaconf.__file__).parents[1])')
cp -r "$site/omegaconf" "$site/antlr4" .gpukit/site/
du -sh --apparent-size .gpukit  # the device tool carries at most 64 MiB
