#!/usr/bin/env bash
# Ember's GPU checks, on a machine with an NVIDIA GPU, its driver, PyTorch and
# the binaries `scripts/gpu-build.sh` put in .gpu/ (no Rust needed here):
#   1. ember-nn-cuda's tests, the GPU ones included (they skip without a GPU);
#   2. throughput against PyTorch CUDA: 784-512-512-10 at batch 64/256/1024;
#   3. a full FashionMNIST training run on the GPU, test accuracy per epoch.
# Results go to $OUT (default /tmp/ember-gpu): tests.log, bench.txt,
# train.log, run/metrics.csv. SMOKE=1 makes every step short (a check of the
# script itself, on any machine: without a GPU the tests skip, the benchmark
# says why it cannot run, and training falls back to the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/ember-gpu}
mkdir -p "$out"
bin=.gpu/bin
[ -x "$bin/ember" ] || { echo "run scripts/gpu-build.sh first (on a machine with Rust)"; exit 2; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

# NVRTC and cuBLAS: the toolkit's, or those of PyTorch's pip wheels.
libs=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
dirs = {os.path.dirname(p) for r in roots
        for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${libs}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export EMBER_CUDA_LIB_DIR="${libs}:/usr/local/cuda/lib64"

status=0
for t in "$bin"/test-*; do
    echo "== $t" | tee -a "$out/tests.log"
    "$t" --include-ignored --test-threads 1 2>&1 | tee -a "$out/tests.log" || status=1
done

if [ "${SMOKE:-0}" = 1 ]; then
    rounds=1 seconds=0.2 train_args=(--epochs 1 --limit 2000)
else
    rounds=3 seconds=3 train_args=(--epochs 15)
fi
python3 scripts/bench.py --device cuda --ember-bin "$bin/bench_train" --rounds $rounds --seconds $seconds \
    2>&1 | tee "$out/bench.txt" || status=1

data=.gpu/data
[ -d "$data" ] || data=/nonexistent   # the built-in subset
time "$bin/ember" train --device cuda --layers 784-512-256-10 "${train_args[@]}" \
    --batch 128 --lr 1e-3 --scheduler cosine --val-fraction 0 --eval-test \
    --data "$data" --out "$out/run" 2>&1 | tee "$out/train.log" || status=1
python3 - "$out/run/metrics.csv" <<'PY' | tee -a "$out/train.log"
import csv, sys
t = 0.0
for row in csv.DictReader(open(sys.argv[1])):
    t += float(row["seconds"])
    if float(row["val_acc"]) >= 0.89:
        print(f"time to 0.89 test accuracy: {t:.1f} s of training (epoch {row['epoch']})")
        break
else:
    print("0.89 test accuracy not reached")
PY
exit $status
