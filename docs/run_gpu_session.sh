#!/usr/bin/env bash
# One script for a session lent a GPU machine. The device tool runs it in a copy of the working tree and brings
# back what lands under $OUT. A session has 15 minutes of device time in all (a start costs minutes) and a
# command at most 10, so: run it ONCE, as `run` with timeout_s ≈ 540, with the MODE the issue needs. Every phase
# has its own time limit (SIGINT: runs stop like Ctrl-C and keep their checkpoints) and writes under $OUT at
# once, so what finished comes back even if a later phase does not.
#
#   MODE=models      (issue 12) the bundled dSprites models: VAE and β-VAE (β = 4) stacked in one pass, then the
#                    capacity β-VAE alone with C rising over its whole run, as Burgess et al. do (README "Bundled
#                    models": the CPU one reached C = 25 in 8,000 steps); each trains until TRAIN_S runs out or STEPS, then
#                    `bvae evaluate --quick`. Export with `bvae export-model` on this machine afterwards.
#   MODE=objectives  (issue 13) every objective at equal STEPS (default 5,000), SEEDS seeds each, all objectives
#                    at once (one `bvae sweep` per objective, its seeds stacked in one pass), scored with MIG,
#                    DCI and FactorVAE at counts ÷ METRIC_SCALE, and the validation reconstruction.
#   MODE=benchmark   benchmarks/gpu_throughput.py with the profile (issue 11's figures), nothing else.
#
# Usage: OUT=/path MODE=objectives bash docs/run_gpu_session.sh
# A CPU smoke test of the commands (seconds, nothing measured): OUT=/tmp/gpu-smoke MODE=objectives STEPS=3 \
#   SEEDS=1x METRIC_SCALE=1000 DEVICE=cpu bash docs/run_gpu_session.sh   (and MODE=models STEPS=3 TRAIN_S=60)
set -uo pipefail
OUT=$(mkdir -p "${OUT:-out}" && cd "${OUT:-out}" && pwd)
MODE=${MODE:-objectives}
DEVICE=${DEVICE:-auto}
cd "$(dirname "$0")/.."

log() { echo "[$(date +%T)] $*" | tee -a "$OUT/session.log"; }

if ! command -v bvae > /dev/null; then
  log "installing"
  python -m pip install --quiet -e . > "$OUT/install.log" 2>&1
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -c "import torch; print(torch.__version__, torch.cuda.is_available())" > "$OUT/torch.txt" 2>&1

case "$MODE" in
benchmark)
  log "benchmark"
  timeout -s INT 480 python benchmarks/gpu_throughput.py --profile --json "$OUT/gpu_throughput.json" \
    > "$OUT/gpu_throughput.txt" 2>&1
  ;;

models)
  STEPS=${STEPS:-100000}
  TRAIN_S=${TRAIN_S:-150}  # per training phase; two phases, then the three scorings side by side (120 s)
  log "models: VAE and β-VAE stacked, ${TRAIN_S} s or ${STEPS} steps"
  timeout -s INT "$TRAIN_S" bvae sweep --out "$OUT/models-dsprites" --betas 1,4 --seeds 0 --steps "$STEPS" \
    --metrics none --stack 2 --checkpoint-every 1000 --device "$DEVICE" > "$OUT/models-dsprites.log" 2>&1
  log "models: capacity β-VAE, C over the whole run"
  timeout -s INT "$TRAIN_S" bvae train --objective beta-b --gamma 1000 --c-max 25 --c-steps "$STEPS" \
    --steps "$STEPS" --seed 0 --checkpoint-every 1000 --device "$DEVICE" --out "$OUT/models-capacity" --quiet \
    > "$OUT/models-capacity.log" 2>&1
  log "models: evaluate --quick"
  for run in "$OUT"/models-dsprites/runs/* "$OUT/models-capacity"; do
    [ -f "$run/checkpoint.pt" ] || continue
    bvae info "$run/checkpoint.pt" > "$run/info.txt" 2>&1
    timeout -s INT 120 bvae evaluate "$run/checkpoint.pt" --quick --quiet --json "$run/metrics.json" \
      > "$run/evaluate.log" 2>&1 &
  done
  wait
  ;;

objectives)
  STEPS=${STEPS:-5000}
  SEEDS=${SEEDS:-3x}
  METRIC_SCALE=${METRIC_SCALE:-10}
  TRAIN_S=${TRAIN_S:-420}  # all sweeps together, training and scoring
  # objective and its main weight: the registry's defaults (Higgins β 4, Burgess γ 1000, Chen β 4,
  # DIP-VAE λ_od 10 and 1, FactorVAE γ 10); capacity's C rises over the whole run
  declare -A WEIGHTS=([vae]=1 [beta-h]=4 [beta-b]=1000 [beta-tcvae]=4 [dip-vae-i]=10 [dip-vae-ii]=1 [factor-vae]=10)
  log "objectives: ${!WEIGHTS[*]} at ${STEPS} steps, seeds ${SEEDS}, metrics ÷${METRIC_SCALE}"
  for objective in "${!WEIGHTS[@]}"; do
    extra=()
    [ "$objective" = beta-b ] && extra=(--c-steps "$STEPS")
    timeout -s INT "$TRAIN_S" bvae sweep --out "$OUT/objectives/$objective" --objective "$objective" \
      --weights "${WEIGHTS[$objective]}" --seeds "$SEEDS" --steps "$STEPS" --stack 0 --device "$DEVICE" \
      --metrics mig,dci,factor_vae,unsupervised --metric-scale "$METRIC_SCALE" "${extra[@]}" \
      > "$OUT/objectives-$objective.log" 2>&1 &
  done
  wait
  log "objectives: done"
  ;;

*)
  echo "MODE must be models, objectives or benchmark; got $MODE" >&2
  exit 2
  ;;
esac
log "finished"
ls -laR "$OUT" > "$OUT/files.txt" 2>&1
