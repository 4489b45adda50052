#!/usr/bin/env bash
# One command from a model to firmware:
#   1. train 784-128-64-10 (ReLU, Adam) on FashionMNIST with the ember CLI;
#   2. export the checkpoint: .emb in f32 and int8 (`ember export`), copied to
#      firmware-example/models/;
#   3. write the firmware's test images, their labels and the host's predicted
#      classes (`cargo xtask test-images`);
#   4. build the firmware and run it under QEMU (scripts/run-firmware.sh): it
#      passes only if the device predicts the host's class for every image.
#
# Usage: scripts/model-to-firmware.sh [--checkpoint FILE] [--out DIR]
#                                     [--target TRIPLE]... [TRAIN OPTION]...
#   --checkpoint FILE  skip training and export this checkpoint instead
#   --out DIR          where the run goes (default runs/firmware)
#   --target TRIPLE    firmware target(s) to run (default: Cortex-M4F and M0)
#   TRAIN OPTION       passed to `ember train` (default --epochs 10 --seed 0);
#                      the firmware's model type fixes --layers and --activation
#
# It replaces the committed files in firmware-example/models/; CI runs those
# (scripts/test.sh trains nothing). `git checkout firmware-example/models`
# brings them back.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

checkpoint=""
out=runs/firmware
targets=()
train=()
while [ $# -gt 0 ]; do
  case $1 in
    --checkpoint) checkpoint=${2:?--checkpoint needs a file}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --target) targets+=("${2:?--target needs a triple}"); shift 2 ;;
    --layers|--layers=*|--activation|--activation=*)
      echo "model-to-firmware.sh: the firmware runs 784-128-64-10 with ReLU (firmware-example/src/inference.rs)" >&2
      exit 2 ;;
    *) train+=("$1"); shift ;;
  esac
done
case " ${train[*]-} " in *" --epochs"*) ;; *) train+=(--epochs 10) ;; esac
case " ${train[*]-} " in *" --seed"*) ;; *) train+=(--seed 0) ;; esac

ember() { cargo run -q --release -p ember-std --bin ember -- "$@"; }
models=firmware-example/models
name=fashion-784-128-64-10

if [ -z "$checkpoint" ]; then
  step "train: ember train --layers 784-128-64-10 --activation relu --optimizer adam ${train[*]} --out $out"
  ember train --layers 784-128-64-10 --activation relu --optimizer adam "${train[@]}" --out "$out"
  checkpoint=$out/checkpoint.safetensors
fi

step "export: ember export --checkpoint $checkpoint --out $out/export"
ember export --checkpoint "$checkpoint" --out "$out/export"
cp "$out/export/model.emb" "$models/$name.emb"
cp "$out/export/model-int8.emb" "$models/$name-int8.emb"
ls -l "$models/$name.emb" "$models/$name-int8.emb"

step "test images and the host's predictions: cargo xtask test-images"
cargo xtask test-images --models "$models" --name "$name"

step "firmware: build and run under QEMU"
scripts/run-firmware.sh "${targets[@]}"
