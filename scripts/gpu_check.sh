#!/usr/bin/env bash
# The one prepared GPU check (under 5 minutes on one H100/H200): `make bench` on CUDA, then a
# short real mnist_meanact run and a short autoencoder run on real MNIST, each with a time limit
# so that partial results still come back (`make bench-gpu`). Where the suite is not installed
# (a lent GPU machine), it uses, next to the checkout (not committed):
#   .devsite/  pure-Python packages the GPU machine lacks (hydra, omegaconf, antlr4)
#   .devdata/MNIST/raw/  the four MNIST IDX files (unless ELUREPRO_DATA is set)
# and writes everything under $OUT (default ./gpu-out).
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/.devsite:$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export ELUREPRO_DATA="${ELUREPRO_DATA:-$PWD/.devdata}"
export ELUREPRO_CACHE="${ELUREPRO_CACHE:-/tmp/elurepro-cache}"
PY=${PY:-python3}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"
  echo "commit ${ELUREPRO_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
} 2>&1 | tee "$OUT/env.txt"
timeout "${BENCH_S:-150}" $PY scripts/bench.py --device cuda --out "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log"
timeout "${MNIST_S:-60}" $PY -m elurepro.train experiment=mnist_meanact budget=short \
  runs_dir="$OUT/runs" progress=false 2>&1 | tee "$OUT/mnist.log"
timeout "${AE_S:-60}" $PY -m elurepro.train experiment=mnist_autoencoder budget=short \
  runs_dir="$OUT/runs" progress=false 2>&1 | tee "$OUT/autoencoder.log"
tar czf "$OUT/runs.tgz" --exclude='checkpoint*.pt' -C "$OUT" runs
rm -rf "$OUT/runs"
ls -la "$OUT"
