#!/usr/bin/env bash
# `make bench-gpu`: the GPU measurements in one script, within BUDGET_S seconds (default 480: 8
# minutes on one H200). Each step has a share of the budget (plus what earlier steps left
# unused), so a slow or hanging step costs only its share; a diverged member is reported by the
# step that met it, and a failed step is logged and the next one runs. PLAN=bench (the default,
# issue 25), in order:
#   bench.md      scripts/bench.py --device cuda: every model (11-layer first) against the
#                 reference; bf16, tf32, channels first, CUDA graphs; ELU against ReLU
#   e2e.md        scripts/bench_e2e.py: `python -m elurepro.train` on the 11-layer config end to
#                 end (eager and CUDA graphs, 2000 iterations, synthetic CIFAR-100 files) against
#                 the bench's step rate
#   profile.md    the 11-layer step under torch.profiler in fp32, tf32 and bf16
#   learns-*.md   python -m elurepro.learns on the CNN configs for LEARNS_STEPS iterations, each
#                 member's verdict and learning curve
# PLAN=curves (issue 21's item 6; `make curves-gpu`): only the learns steps, for the two CIFAR
# nets' ELU and ReLU members without BN, CURVES_STEPS iterations (default 5000) evaluated every
# 250: labelled early learning curves, never comparable with the paper's.
# Both plans add learns-runs.tar.gz (the learns runs without checkpoints: metrics.jsonl, summaries,
# TensorBoard events, also of a step stopped at its limit; `python -m elurepro.analyze` reads
# them here) and gpu_check.log (everything printed, the environment first): at most 8 files in
# $OUT (default ./gpu-out), what a lent machine sends back; caches go to a temporary folder.
# On a lent machine without the suite's pure-Python dependencies or data, run
# `python scripts/gpu_payload.py` here first: it builds .devsite/ and .devdata/, which this
# script uses when present, and prints the device call that carries them.
set -u
OUT=${OUT:-gpu-out}
BUDGET_S=${BUDGET_S:-480}
MIN_STEP_S=${MIN_STEP_S:-10}  # a step with less left than this is skipped
LEARNS_STEPS=${LEARNS_STEPS:-600}  # the 18-layer ELU net leaves ln C after about 200 (results/learns/)
PLAN=${PLAN:-bench}
CURVES_STEPS=${CURVES_STEPS:-5000}
case $PLAN in bench | curves) ;; *) echo "PLAN=$PLAN: expected bench or curves" >&2; exit 2 ;; esac
PY=${PY:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD/.devsite:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ -z "${ELUREPRO_DATA:-}" ] && [ -d .devdata ]; then export ELUREPRO_DATA="$PWD/.devdata"; fi
export ELUREPRO_CACHE="$WORK/cache" ELUREPRO_RUNS="$WORK/runs"
start=$(date +%s)
planned=0  # percent of the budget given out so far

# step <name> <percent of the budget> <command...>: the command, stopped when the steps so far
# have used their shares in all: time an earlier step left unused goes to the next ones.
step() {
  local name=$1
  planned=$((planned + $2))
  shift 2
  local limit=$((start + BUDGET_S * planned / 100 - $(date +%s)))
  if ((limit < MIN_STEP_S)); then
    echo "== $name: skipped (${limit} s left of its share of the $BUDGET_S s budget)"
    return
  fi
  echo "== $name (limit $limit s): $*"
  local began rc
  began=$(date +%s)
  timeout -k 5 "$limit" "$@"
  rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "== $name: stopped at its $limit s limit; what it wrote so far is kept"
  else
    echo "== $name: exit status $rc after $(($(date +%s) - began)) s"
  fi
}

{
  echo "== environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import torch, torchvision as tv; print('torch', torch.__version__, 'torchvision', \
tv.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
  echo "commit ${ELUREPRO_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
  echo "data: ${ELUREPRO_DATA:-none}; budget $BUDGET_S s"
  echo "plan: $PLAN"
  if [ "$PLAN" = bench ]; then
    step bench 42 $PY scripts/bench.py --device cuda --only cnn11,cnn18,spp,mlp,ae \
      --cnn-members 1,2,4 --out "$OUT/bench.md"
    step e2e 25 $PY scripts/bench_e2e.py --device cuda --only cnn11 --steps 2000 \
      --synthetic-data --out "$OUT/e2e.md"
    step profile 7 $PY scripts/bench.py --device cuda --profile "$OUT/profile.md"
    runs=(cnn11:cifar100_11layer:9 cnn18:cifar_18layer,cifar_18layer-relu:9 spp:imagenet_15layer_spp:8)
    steps=$LEARNS_STEPS
    members=()
  else
    # The 18-layer net costs 19 times the 11-layer's arithmetic per image (results/bench/).
    runs=(cnn11:cifar100_11layer:25 cnn18:cifar_18layer:70)
    steps=$CURVES_STEPS
    members=(--set 'members.activations=[elu,relu]' --set 'members.batchnorm=[false]'
      --set train.eval_every=250)
  fi
  for run in "${runs[@]}"; do
    IFS=: read -r key experiment share <<<"$run"
    # shellcheck disable=SC2086  # LEARNS_ARGS: extra flags, split on purpose
    step "learns-$key" "$share" $PY -m elurepro.learns --steps "$steps" --device cuda \
      --only "$experiment" --runs "$WORK/learns" --out "$OUT/learns-$key.md" \
      ${members[@]+"${members[@]}"} ${LEARNS_ARGS:-}
  done
  if [ -d "$WORK/learns" ]; then
    tar -czf "$OUT/learns-runs.tar.gz" --exclude='*.pt' -C "$WORK" learns &&
      echo "== learns-runs.tar.gz: the learns runs without checkpoints"
  fi
  echo "== files in $OUT (at most 8 come back):"
  ls -la "$OUT"
  if (($(find "$OUT" -type f | wc -l) > 8)); then
    echo "warning: more than 8 files in $OUT with this log: some will not come back"
  fi
} 2>&1 | tee "$OUT/gpu_check.log"
