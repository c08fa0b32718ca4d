#!/usr/bin/env bash
# The one prepared GPU check (about 7 minutes on one H100/H200, `make bench-gpu`):
#  1. `scripts/bench.py --device cuda`: every paper model (the 18-layer net included) against the
#     reference loop, fp32 and with tf32, bf16 and CUDA graphs (torch.compile reduce-overhead);
#  2. what tf32 and bf16 do to results: mnist_meanact (ELU, ReLU, LReLU, 5 seeds) in fp32, tf32
#     and bf16 with the same seeds, 3,000 iterations each, then the leaderboard of the three
#     sweeps side by side (python -m elurepro.leaderboard; each precision is its own sweep and is
#     labelled; none is merged with another).
# Each step has a time limit so that partial results still come back. Where the suite is not
# installed (a lent GPU machine), it uses, next to the checkout (not committed):
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
timeout "${BENCH_S:-240}" $PY scripts/bench.py --device cuda --out "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log"
for precision in fp32 tf32 bf16; do
  case $precision in
    fp32) flags=() ;;
    tf32) flags=(execution.tf32=true) ;;
    bf16) flags=(execution.bf16=true) ;;
  esac
  timeout "${PRECISION_S:-50}" $PY -m elurepro.train experiment=mnist_meanact budget=short \
    budget.max_steps=3000 runs_dir="$OUT/runs" progress=false "${flags[@]}" 2>&1 \
    | tee "$OUT/mnist-$precision.log"
done
timeout 60 $PY -m elurepro.leaderboard "$OUT/runs" --out "$OUT/precision" 2>&1 | tee "$OUT/precision.log"
tar czf "$OUT/runs.tgz" --exclude='checkpoint*.pt' -C "$OUT" runs
rm -rf "$OUT/runs"
ls -la "$OUT"
