#!/usr/bin/env bash
# Evaluates the model the firmware fine-tuned on the device and wrote back
# (through semihosting under QEMU: scripts/run-firmware.sh writes
# target/ember-finetuned.emb) with `ember eval`, beside the deployed model,
# on the held-out shifted images (colour-inverted test images the models
# never trained on: firmware-example/models/finetune-eval-*.bin, made IDX
# here). Exits 1 unless the adapted model gains at least 20 points.
#
# Usage: scripts/eval-finetuned.sh [ADAPTED.emb]   (default target/ember-finetuned.emb)
set -euo pipefail
cd "$(dirname "$0")/.."

adapted=${1:-target/ember-finetuned.emb}
deployed=firmware-example/models/fashion-784-128-64-10-int8.emb
models=firmware-example/models
if [ ! -f "$adapted" ]; then
  echo "eval-finetuned.sh: $adapted is missing; scripts/run-firmware.sh thumbv7em-none-eabihf writes it" >&2
  exit 1
fi

# The held-out shifted images as IDX files (big-endian header, then the bytes).
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
byte() { printf "\\$(printf %03o "$1")"; }
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
n=$(stat -c %s "$models/finetune-eval-labels.bin")
{ be32 2051; be32 "$n"; be32 28; be32 28; cat "$models/finetune-eval-images.bin"; } \
  >"$dir/t10k-images-idx3-ubyte"
{ be32 2049; be32 "$n"; cat "$models/finetune-eval-labels.bin"; } >"$dir/t10k-labels-idx1-ubyte"

cargo build -q --release -p ember-nn-std --bin ember
ember="${CARGO_TARGET_DIR:-target}/release/ember"
accuracy() {
  local out
  out=$("$ember" eval --model "$1" --data "$dir")
  printf '%s\n' "$out" >&2
  awk '/^accuracy:/ { print $2 }' <<<"$out"
}
echo "== deployed model ($deployed)" >&2
before=$(accuracy "$deployed")
echo "== adapted on the device ($adapted)" >&2
after=$(accuracy "$adapted")
gain=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", 100 * (a - b) }')
echo "fine-tuned on the device: int8 accuracy on $n shifted images $before -> $after ($gain points)"
awk -v g="$gain" 'BEGIN { exit !(g >= 20) }' || {
  echo "eval-finetuned.sh: the adapted model gains $gain points, fewer than 20" >&2
  exit 1
}
