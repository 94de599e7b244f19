#!/usr/bin/env bash
# One script for a session lent a GPU machine (the device tool runs it in a copy of the working tree and
# brings back what lands under $OUT). In order, each step writing its output at once so a time-out keeps
# what finished:
#   1. install (torch as the machine has it, the package, no extras),
#   2. benchmarks/gpu_throughput.py with the profile (issue 11's figures: anchor, today, no-sync, compiled,
#      stacked 8 and 24, batch 64 and 256),
#   3. the bundled models (issue 12) at STEPS steps, stacked in one pass per dataset, then exported.
# Usage: OUT=/path STEPS=100000 bash docs/run_gpu_session.sh
set -uo pipefail
OUT=${OUT:-out}
STEPS=${STEPS:-100000}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
python -m pip install --quiet -e . 2>&1 | tail -2
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

timeout 900 python benchmarks/gpu_throughput.py --profile --json "$OUT/gpu_throughput.json" > "$OUT/gpu_throughput.txt" 2>&1

# dSprites: VAE and β-VAE (β = 4) in one stacked pass; capacity β-VAE alone (its own objective)
bvae sweep --out "$OUT/bundle-dsprites" --betas 1,4 --seeds 0 --steps "$STEPS" --metrics none --stack 2 \
  --checkpoint-every 5000 > "$OUT/bundle-dsprites.log" 2>&1
bvae train --objective beta-b --gamma 1000 --c-max 25 --c-steps "$STEPS" --steps "$STEPS" --seed 0 \
  --checkpoint-every 5000 --out "$OUT/bundle-capacity" --quiet > "$OUT/bundle-capacity.log" 2>&1
for run in "$OUT"/bundle-dsprites/runs/* "$OUT/bundle-capacity"; do
  bvae evaluate "$run/checkpoint.pt" --json "$run/metrics.json" > "$run/evaluate.log" 2>&1
done
ls -la "$OUT"
