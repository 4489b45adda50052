#!/usr/bin/env bash
# Soak test (not in CI): `ember train` for 100 epochs with a checkpoint every
# epoch, stopped three times and resumed from its checkpoint, with the
# process's resident memory (VmRSS) sampled once per epoch. Fails if memory
# grows: in each of the four processes (a quarter of the epochs each), the
# most RSS of its second half must be within 5% (or 16 MiB) of the most of
# its first half (after its first two epochs); and the resumed run must end
# where an uninterrupted run would (the same model.emb). Prints a table of
# epoch and RSS.
#
# Usage: scripts/soak.sh [EPOCHS]   (default 100; the built-in data subset)
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=${1:-100}
layers=784-256-128-10
data=std-backend/data/fashion-mnist-subset
cargo build -q --release -p ember-nn-std --bin ember
ember="${CARGO_TARGET_DIR:-target}/release/ember"
mkdir -p target
dir=$(mktemp -d target/soak.XXXXXX)
trap 'rm -rf "$dir"' EXIT

# One process: trains until `stop` (or the end), sampling RSS at each new epoch line.
leg() {
  local stop=$1 resume=$2 log="$dir/leg-$1.log"
  local args=(train --layers "$layers" --epochs "$epochs" --data "$data" --seed 1 --threads 2
    --out "$dir/run")
  [ "$stop" = end ] || args+=(--stop-after "$stop")
  [ -z "$resume" ] || args+=(--resume "$dir/run/checkpoint.safetensors")
  "$ember" "${args[@]}" >"$log" 2>&1 &
  local pid=$! seen=0 n rss
  while kill -0 "$pid" 2>/dev/null; do
    n=$(awk '/^epoch +[0-9]+ +loss/ { k = $2 } END { print k + 0 }' "$log")
    if [ "$n" -gt "$seen" ]; then
      rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
      [ -z "$rss" ] || echo "$n $rss $stop" >>"$dir/rss"
      seen=$n
    fi
    sleep 0.2
  done
  wait "$pid"
}

quarter=$((epochs / 4))
leg "$quarter" ""
leg "$((2 * quarter))" resume
leg "$((3 * quarter))" resume
leg end resume
resumed=$(cksum <"$dir/run/model.emb")

# The same run without interruption, for the end state.
"$ember" train --layers "$layers" --epochs "$epochs" --data "$data" --seed 1 --threads 2 \
  --out "$dir/straight" >"$dir/straight.log" 2>&1
straight=$(cksum <"$dir/straight/model.emb")

echo "epoch rss_kib process"
cat "$dir/rss"
status=0
# Per process (they restart, so each is compared with its own early epochs).
verdicts=$(awk -v q="$quarter" '
  { leg = $3; e = $1; r = $2
    if (!(leg in first)) first[leg] = e
    rel = e - first[leg]
    if (rel >= 2 && rel < 2 + q / 2 && r > early[leg]) early[leg] = r
    if (rel >= q - q / 2 && r > late[leg]) late[leg] = r }
  END { for (l in early) {
          ok = late[l] <= early[l] * 1.05 || late[l] - early[l] <= 16384
          printf "process %s: early max %d KiB, late max %d KiB: %s\n", l, early[l], late[l], ok ? "ok" : "GROWS" } }' "$dir/rss")
echo "$verdicts"
case $verdicts in *GROWS*) status=1 ;; esac
if [ "$resumed" = "$straight" ]; then
  echo "stopped and resumed 3 times: model.emb identical to the uninterrupted run's"
else
  echo "stopped and resumed 3 times: model.emb DIFFERS from the uninterrupted run's"
  status=1
fi
exit "$status"
