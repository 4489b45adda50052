#!/usr/bin/env bash
# One command from a model to firmware, for any MLP on FashionMNIST:
#   1. train it with the ember CLI (default 784-128-64-10, ReLU, Adam);
#   2. export the checkpoint: .emb in f32 and int8 (`ember export`), into the
#      models directory as NAME.emb and NAME-int8.emb (NAME from the layers);
#   3. write the firmware's test images, their labels and the host's outputs
#      (`cargo xtask test-images`), and for the models in firmware-example/models
#      (the ones the firmware also fine-tunes) the host's fine-tuned head CRC;
#   4. build the firmware and run it under QEMU (scripts/run-firmware.sh),
#      with EMBER_FIRMWARE_MODELS pointing at the models directory: its build
#      script derives the model type from the files' header, so any
#      architecture builds; it passes only if the device gives the host's f32
#      class and int8 logits for every image.
#
# Usage: scripts/model-to-firmware.sh [--checkpoint FILE] [--out DIR]
#                                     [--models DIR] [--target TRIPLE]...
#                                     [TRAIN OPTION]...
#   --checkpoint FILE  skip training and export this checkpoint instead
#   --out DIR          where the run goes (default runs/firmware)
#   --models DIR       where the model set goes (default firmware-example/models,
#                      replacing the committed model; `git checkout
#                      firmware-example/models` brings it back)
#   --target TRIPLE    firmware target(s) to run (default: Cortex-M4F and M0)
#   TRAIN OPTION       passed to `ember train` (default --layers 784-128-64-10
#                      --activation relu --epochs 10 --seed 0); the input
#                      width must be 784
#
# CI (scripts/test.sh) runs the committed files, and this script once more for
# a 784-64-32-10 tanh model in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

checkpoint=""
out=runs/firmware
models=firmware-example/models
targets=()
train=()
layers=784-128-64-10
activation=relu
while [ $# -gt 0 ]; do
  case $1 in
    --checkpoint) checkpoint=${2:?--checkpoint needs a file}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --models) models=${2:?--models needs a directory}; shift 2 ;;
    --target) targets+=("${2:?--target needs a triple}"); shift 2 ;;
    --layers) layers=${2:?--layers needs widths}; shift 2 ;;
    --layers=*) layers=${1#--layers=}; shift ;;
    --activation) activation=${2:?--activation needs a name}; shift 2 ;;
    --activation=*) activation=${1#--activation=}; shift ;;
    *) train+=("$1"); shift ;;
  esac
done
case $layers in 784-*) ;; *) echo "model-to-firmware.sh: the firmware's test images have 784 pixels: --layers must start with 784" >&2; exit 2 ;; esac
case " ${train[*]-} " in *" --epochs"*) ;; *) train+=(--epochs 10) ;; esac
case " ${train[*]-} " in *" --seed"*) ;; *) train+=(--seed 0) ;; esac
name=fashion-$layers
# int8 activations other than ReLU and the identity need the f32 math linked.
features=""
case $activation in relu|identity|none) ;; *) features=int8-float-activations ;; esac

ember() { cargo run -q --release -p ember-nn-std --bin ember -- "$@"; }

if [ -z "$checkpoint" ]; then
  step "train: ember train --layers $layers --activation $activation --optimizer adam ${train[*]} --out $out"
  ember train --layers "$layers" --activation "$activation" --optimizer adam "${train[@]}" --out "$out"
  checkpoint=$out/checkpoint.safetensors
fi

step "export: ember export --checkpoint $checkpoint --out $out/export"
ember export --checkpoint "$checkpoint" --out "$out/export"
mkdir -p "$models"
# One model set per directory: the firmware's build script takes the one pair.
rm -f "$models"/*.emb
cp "$out/export/model.emb" "$models/$name.emb"
cp "$out/export/model-int8.emb" "$models/$name-int8.emb"
ls -l "$models/$name.emb" "$models/$name-int8.emb"

step "test images and the host's outputs: cargo xtask test-images"
cargo xtask test-images --models "$(realpath "$models")" --name "$name"

if [ "$(realpath "$models")" = "$(realpath firmware-example/models)" ]; then
  # The firmware fine-tunes the model in models/ and checks its head against
  # the host's: the host's figure is the new model's now.
  step "fine-tuning on the host: the head's CRC for the firmware to match"
  EMBER_UPDATE_FINETUNE=1 cargo test -q -p ember-firmware host_finetuning
fi

step "firmware: build and run under QEMU"
EMBER_FIRMWARE_MODELS=$(realpath "$models") EMBER_FIRMWARE_FEATURES=$features \
  scripts/run-firmware.sh "${targets[@]}"
