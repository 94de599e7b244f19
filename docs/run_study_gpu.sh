#!/usr/bin/env bash
# The README's comparison and β sweep as they were run on one GPU, inside a fixed time budget:
# GPU throughput figures, a probe of how fast 18 runs train side by side, then `bvae compare`
# (VAE vs β-VAE, β=4) and `bvae sweep` (8 β x 2 seeds) at once with as many steps as fit.
# Results land in $STUDY; small archives of them in $OUT (what comes back from the GPU machine).
#
#   OUT=/tmp/out BUDGET=540 bash docs/run_study_gpu.sh
set -u
OUT=${OUT:-/tmp/study-out}
STUDY=${STUDY:-/tmp/study}
BUDGET=${BUDGET:-540}          # seconds for everything below
METRIC_RESERVE=${METRIC_RESERVE:-230}  # seconds kept for scoring and reports after training
PY=${PY:-python3}
BETAS=${BETAS:-0.001,0.01,0.1,1,2,4,8,16}
SEEDS=${SEEDS:-2x}
SWEEP_WORKERS=${SWEEP_WORKERS:-16}
PROBE_STEPS=${PROBE_STEPS:-300}
PROBE_WARMUP=${PROBE_WARMUP:-100}
export PYTHONUNBUFFERED=1
START=$(date +%s)
mkdir -p "$OUT" "$STUDY"
left() { echo $((BUDGET - ($(date +%s) - START))); }

nvidia-smi -L || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
DEVICE=${DEVICE:-auto}
# a CUDA path that breaks should not cost the whole budget: fall back to the CPU cores
if [ -z "${FORCE_STEPS:-}" ] && ! timeout 60 $PY - <<'EOF'
from bvae_desktop.core.config import TrainConfig
from bvae_desktop.core.experiment_run import MetricPlan, score_trainer
from bvae_desktop.core.trainer import Trainer
t = Trainer(TrainConfig(steps=30, val_every=10))
events = list(t.steps())
scores = score_trainer(t, MetricPlan(names=["mig", "unsupervised"], overrides={"mig": {"num_train": 500}}))
print("smoke:", t.device, events[-1].loss, scores["mig"]["mig"], scores["unsupervised"]["active_units"])
EOF
then
  echo "CUDA smoke test failed: running on the CPU"; DEVICE=cpu
fi
COMPARE_SEEDS=${COMPARE_SEEDS:-0}
COMPARE_WORKERS=${COMPARE_WORKERS:-2}
PROBE_WORKERS=$((SWEEP_WORKERS + COMPARE_WORKERS))
[ -n "${SKIP_THROUGHPUT:-}" ] || timeout 100 $PY benchmarks/train_throughput.py --steps 60 --rounds 2 2>&1 | tee "$OUT/train_throughput.txt"
[ -n "${FORCE_STEPS:-}" ] || timeout 90 $PY benchmarks/parallel_runs.py --workers "$PROBE_WORKERS" --steps "$PROBE_STEPS" --warmup "$PROBE_WARMUP" --device "$DEVICE" \
  --json "$STUDY/parallel_runs.json" \
  2>&1 | tee "$OUT/parallel_runs.txt"

STEPS=$($PY - "$STUDY/parallel_runs.json" "$(left)" "$METRIC_RESERVE" "$PROBE_WORKERS" <<'EOF'
import json, sys
path, left, reserve, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
try:
    rate = json.load(open(path))["workers"][workers]["per_run"]
except (OSError, KeyError, ValueError):
    rate = 20.0
seconds = max(30, left - reserve - 25)  # 25 s: workers start, import torch, open CUDA
print(max(2000, min(100_000, int(rate * 0.9 * seconds) // 1000 * 1000)))
EOF
)
echo "steps per run: $STEPS (seconds left: $(left))"
[ -z "${FORCE_STEPS:-}" ] || STEPS=$FORCE_STEPS
METRICS=(${METRICS_FLAGS:---metric-scale 2 --set dci.num_train=2000 --set dci.num_test=1000})
COMMON=(--device "$DEVICE" --steps "$STEPS" --val-every "${VAL_EVERY:-500}" --checkpoint-every 2000 --quiet "${METRICS[@]}")
LIMIT=$(( $(left) - 25 ))
timeout -s INT "$LIMIT" $PY -m bvae_desktop.cli compare --out "$STUDY/compare" --beta 4 --seeds "$COMPARE_SEEDS" --workers "$COMPARE_WORKERS" \
  "${COMMON[@]}" > "$STUDY/compare.log" 2>&1 &
timeout -s INT "$LIMIT" $PY -m bvae_desktop.cli sweep --out "$STUDY/sweep" --betas "$BETAS" --seeds "$SEEDS" --workers "$SWEEP_WORKERS" \
  "${COMMON[@]}" > "$STUDY/sweep.log" 2>&1
wait
tail -n 25 "$STUDY/compare.log" "$STUDY/sweep.log"
cp "$OUT"/*.txt "$STUDY"/ 2>/dev/null

# archives under 16 MB each: results without weights; the compared models and β=16 with theirs
tar czf "$OUT/study-results.tgz" -C "$STUDY" --exclude='checkpoint.pt' --exclude='sweep/runs/*/runlog.h5' .
tar czf "$OUT/compare-vae.tgz" -C "$STUDY" compare/runs/vae_seed-0
tar czf "$OUT/compare-beta4.tgz" -C "$STUDY" compare/runs/beta-4_seed-0
tar czf "$OUT/sweep-beta16.tgz" -C "$STUDY" --exclude='runlog.h5' sweep/runs/beta-16_seed-0
ls -la "$OUT"
echo "total seconds: $(( $(date +%s) - START ))"
