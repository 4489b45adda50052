#!/usr/bin/env bash
# MLPerf Tiny's models on the Cortex-M4F under QEMU (mps2-an386, -icount
# shift=0: one instruction a nanosecond of virtual time), int8, weights in
# flash, and a table of what they cost.
#
# For each model:
#   1. `cargo xtask mlperf --model M --out DIR/M`: the model of
#      ember_nn_core::nn::zoo with seeded random weights (batch norms in
#      evaluation mode with random running statistics), exported (AD as a
#      dense file, KWS and IC as graph files), int8 calibrated on random
#      inputs, a few random test inputs and the host's int8 outputs. No data
#      set: the instruction count does not depend on the values, except at
#      ReLU branches and saturation.
#   2. the firmware with only that model (--no-default-features --features
#      qemu,mlperf, EMBER_FIRMWARE_MODELS=DIR/M), release, thumbv7em-none-eabihf;
#   3. run under QEMU: it passes only if every test input's int8 outputs
#      are the host's byte for byte; it prints its instructions per
#      inference, RAM (.bss and .data + the stack it used) and flash.
# Then the table: model, multiply-adds, instructions per inference, per
# multiply-add, RAM, flash (the whole firmware with its test data; the model
# file in parentheses).
#
# Usage: scripts/mlperf-tiny.sh [--out DIR] [--count N] [MODEL...]
#   MODEL   ad, kws, ic, vww (default: all four)
#   --out   where the model directories and logs go (default runs/mlperf-tiny)
#   --count test inputs per model (default 3)
# Exit status: 0 when every model passes, otherwise 1.
# EMBER_QEMU_TIMEOUT: QEMU's time limit per model in seconds (default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

out=runs/mlperf-tiny
count=3
models=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --count) count=${2:?--count needs a number}; shift 2 ;;
    ad|kws|ic|vww) models+=("$1"); shift ;;
    *) echo "mlperf-tiny.sh: unknown argument $1 (models: ad kws ic vww)" >&2; exit 2 ;;
  esac
done
[ ${#models[@]} -gt 0 ] || models=(ad kws ic vww)
target=thumbv7em-none-eabihf

step "tools"
ensure_firmware_tools "$target"
first_line qemu-system-arm --version

mkdir -p "$out"
out=$(realpath "$out")
elf="${CARGO_TARGET_DIR:-target}/$target/release/ember-firmware"
rows=()
status=0
for m in "${models[@]}"; do
  step "mlperf-$m: files (cargo xtask mlperf --model $m --count $count)"
  cargo xtask mlperf --model "$m" --out "$out/$m" --count "$count"
  step "mlperf-$m: firmware (release, $target, features qemu,mlperf)"
  EMBER_FIRMWARE_MODELS="$out/$m" cargo build -q -p ember-firmware --release --target "$target" \
    --no-default-features --features qemu,mlperf
  step "mlperf-$m: under QEMU (mps2-an386, -icount shift=0)"
  rc=0
  start=$(date +%s)
  firmware-example/qemu-run.sh mps2-an386 "$elf" >"$out/$m.log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  cat "$out/$m.log"
  echo "exit status: $rc ($secs s under QEMU)"
  [ "$rc" -eq 0 ] || status=1
  log=$(cat "$out/$m.log")
  macs=$(sed -nE "s/.*mlperf-$m: .* ([0-9]+) multiply-adds, ([0-9.]+) instructions each; about ([0-9]+) instructions per inference.*/\1 \2 \3/p" <<<"$log")
  mem=$(sed -nE "s/.*mlperf-$m: RAM ([0-9]+) bytes .*; flash ([0-9]+) bytes \(the model ([0-9]+);.*/\1 \2 \3/p" <<<"$log")
  if [ -z "$macs" ] || [ -z "$mem" ]; then
    rows+=("| $m | FAIL (see $out/$m.log) | | | | |")
    status=1
    continue
  fi
  read -r n per instr <<<"$macs"
  read -r ram flash model <<<"$mem"
  verdict=""
  [ "$rc" -eq 0 ] || verdict=" FAIL"
  rows+=("| $m$verdict | $n | $instr | $per | $ram | $flash ($model) |")
done

step "MLPerf Tiny on the Cortex-M4F (QEMU mps2-an386, -icount shift=0; int8, random weights)"
echo "| model | multiply-adds | instructions per inference | per multiply-add | RAM (bytes) | flash (bytes; the model) |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
exit "$status"
