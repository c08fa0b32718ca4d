#!/usr/bin/env bash
# `make <target> WORKERS=N`: start the same training command N times, one worker per GPU
# (CUDA_VISIBLE_DEVICES=i) where this machine has GPUs, and wait for all of them. The workers
# share the sweep through the run store's claims (elurepro/store/), so every member is trained
# exactly once; a worker's lines are prefixed with [wI]. Exit status: that of the first worker
# (in the order they were started) that failed, 0 if none did; so `make` analyses nothing after a
# failed worker.
#   scripts/workers.sh N python -m elurepro.train experiment=... [overrides]
set -u -o pipefail  # pipefail: a worker's status, not that of the sed that prefixes its lines
n=$1
shift
if [ "$n" -le 1 ]; then exec "$@"; fi
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
fi
if [ "$gpus" -gt 0 ] && [ "$n" -gt "$gpus" ]; then
  echo "error: WORKERS=$n but this machine has $gpus GPU(s); use WORKERS=$gpus or fewer" >&2
  exit 2
fi
pids=()
for ((i = 0; i < n; i++)); do
  if [ "$gpus" -gt 0 ]; then export CUDA_VISIBLE_DEVICES=$i; fi
  ( "$@" worker="$i" progress=false 2>&1 | sed -u "s/^/[w$i] /" ) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid"
  code=$?
  if [ "$status" -eq 0 ]; then status=$code; fi
done
exit "$status"
