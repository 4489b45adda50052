#!/usr/bin/env bash
# One command from a model to firmware, for any MLP on FashionMNIST, or on a
# data file (CSV) of your own (--data FILE.csv, below):
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
#                      firmware-example/models` brings it back; for a data
#                      file, default OUT/models)
#   --target TRIPLE    firmware target(s) to run (thumb* or riscv*; default:
#                      all of scripts/run-firmware.sh's, for a data file the
#                      Cortex-M4F and M0); any other --target value is the
#                      data file's target column, for `ember train`
#   TRAIN OPTION       passed to `ember train` (default --layers 784-128-64-10
#                      --activation relu --epochs 10 --seed 0); the input
#                      width must be 784
#
# A data file's model (--data FILE, a CSV, .tsv or .csv.gz file):
#   1. train it (`ember train --data FILE` with the TRAIN OPTIONs, e.g.
#      --target COLUMN, --task classify|regress|reconstruct, --scale
#      standard|minmax|none, --hidden 64,32; default --epochs 50 --seed 0),
#      which exports it (.emb, f32 and int8, the scaling folded in: the model
#      takes raw features); or take the .emb files beside --checkpoint FILE
#      (a checkpoint of `ember train --data`);
#   2. copy them into the models directory (default OUT/models) as NAME.emb
#      and NAME-int8.emb (NAME from the file's name);
#   3. write the held-out rows and the host's outputs (`cargo xtask
#      test-rows`): the test split `ember train` held out (--test-fraction,
#      --split-seed, the same function on the same rows), or every row of
#      --test FILE; at most --count rows (default 200);
#   4. build the firmware and run it under QEMU, on the Cortex-M4F and the
#      Cortex-M0 by default (the M0 gets the f32 model too when its file is
#      at most 64 KiB, and as many rows as 56 KiB hold). It passes only if
#      the device gives, for every row, the host's int8 outputs byte for byte
#      and, for a classifier, the host's f32 class, for a regression or an
#      autoencoder the host's f32 outputs bit for bit (same code both sides).
#   Options of this mode besides the above: --test FILE, --test-fraction F,
#   --split-seed S and --header auto|yes|no go to both `ember train` and the
#   xtask; --count N; --activation NAME as for `ember train`.
#   Example: scripts/model-to-firmware.sh --data std-backend/tests/data/tables/wine.csv \
#              --scale standard --out runs/wine-firmware
#
# A convolutional network (--model cnn, the CLI's FashionMNIST CNN preset,
# Conv2d(1,16,3)-ReLU-MaxPool-Conv2d(16,32,3)-ReLU-MaxPool-Linear(1568,10)):
#   1. train it (`ember train --model cnn` with the TRAIN OPTIONs; default
#      --epochs 5 --seed 0), which writes its graph files (format version 3,
#      f32 and int8 per channel); or export --checkpoint FILE (a checkpoint
#      of `ember train --model cnn`) with `ember export`;
#   2. copy them into the models directory (default OUT/models, not the
#      committed MLP's) as fashion-cnn.emb and fashion-cnn-int8.emb;
#   3. write the test images and the host's outputs (`cargo xtask
#      test-images --count N`, --count default 100: the reference kernels
#      take tens of millions of instructions per image), and the shifted
#      (colour-inverted) images its head is fine-tuned on;
#   4. fine-tune the head (Linear(1568,10)) on the host with the firmware's
#      own code (`EMBER_UPDATE_FINETUNE=1 cargo test -p ember-firmware
#      host_finetuning`), which writes the head's and the adapted file's
#      CRCs beside the model for the device to match;
#   5. build the firmware and run it under QEMU on the Cortex-M4F (f32 and
#      int8, and the head fine-tuned on the device) and the Cortex-M0 (int8).
#      The M0 build does not fit the micro:bit's 16 KiB of RAM: the int8
#      graph's arena alone is 15,680 bytes for the preset (the first
#      convolution's 16x28x28 output beside the first pooling's), and the
#      quantized image and the stack come on top. So it runs on QEMU's
#      mps2-an385 (EMBER_FIRMWARE_MACHINE=mps2-an385: a Cortex-M3, which
#      executes the M0's ARMv6-M code as is, with 4 MiB of RAM), which
#      gives the M0 code's instruction counts.
#   Example: scripts/model-to-firmware.sh --model cnn --epochs 1 --limit 2000 --count 20
#
# CI (scripts/test.sh) runs the committed files, this script once more for
# a 784-64-32-10 tanh model in a temporary directory, for the CNN preset
# (--model cnn, one epoch on 2,000 images of the built-in subset, 20 test
# images on the Cortex-M4F and the M0: about 20 s), and for wine
# (classification, --scale standard) and diabetes (regression) CSV models.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

checkpoint=""
out=runs/firmware
models=""
targets=()
train=()
layers=""
activation=""
data=""
# A data file's options that the row extraction needs too.
split=()
test_file=""
test_fraction=0.2
split_seed=0
header=auto
count=200
count_given=""
model=""
while [ $# -gt 0 ]; do
  case $1 in
    --checkpoint) checkpoint=${2:?--checkpoint needs a file}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --models) models=${2:?--models needs a directory}; shift 2 ;;
    --target)
      # A firmware target triple; for a data file, `ember train`'s target column.
      case ${2:?--target needs a value} in
        thumb*|riscv*) targets+=("$2") ;;
        *) train+=(--target "$2") ;;
      esac
      shift 2 ;;
    --layers) layers=${2:?--layers needs widths}; shift 2 ;;
    --layers=*) layers=${1#--layers=}; shift ;;
    --activation) activation=${2:?--activation needs a name}; shift 2 ;;
    --activation=*) activation=${1#--activation=}; shift ;;
    --data) data=${2:?--data needs a file or directory}; shift 2 ;;
    --test) test_file=${2:?--test needs a file}; split+=(--test "$2"); shift 2 ;;
    --test-fraction) test_fraction=${2:?--test-fraction needs a number}; split+=(--test-fraction "$2"); shift 2 ;;
    --split-seed) split_seed=${2:?--split-seed needs a number}; split+=(--split-seed "$2"); shift 2 ;;
    --header) header=${2:?--header needs auto, yes or no}; split+=(--header "$2"); shift 2 ;;
    --count) count=${2:?--count needs a number}; count_given=1; shift 2 ;;
    --model) model=${2:?--model needs a preset}; shift 2 ;;
    --model=*) model=${1#--model=}; shift ;;
    *) train+=("$1"); shift ;;
  esac
done

ember() { cargo run -q --release -p ember-nn-std --bin ember -- "$@"; }

if [ -n "$data" ] && [ -f "$data" ]; then
  # A data file's model: its held-out rows on the board.
  [ ${#targets[@]} -gt 0 ] || targets=(thumbv7em-none-eabihf thumbv6m-none-eabi)
  [ -n "$models" ] || models=$out/models
  mkdir -p "$models"
  if [ "$(realpath "$models")" = "$(realpath firmware-example/models)" ]; then
    echo "model-to-firmware.sh: a data file's model goes to its own --models directory, not firmware-example/models (the committed FashionMNIST model's)" >&2
    exit 2
  fi
  name=$(basename "$data")
  name=${name%%.*}
  name=$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' '-')
  arch=()
  [ -z "$layers" ] || arch+=(--layers "$layers")
  [ -z "$activation" ] || arch+=(--activation "$activation")
  if [ -z "$checkpoint" ]; then
    case " ${train[*]-} " in *" --epochs"*) ;; *) train+=(--epochs 50) ;; esac
    case " ${train[*]-} " in *" --seed"*) ;; *) train+=(--seed 0) ;; esac
    step "train: ember train --data $data ${split[*]-} ${arch[*]-} ${train[*]} --out $out"
    ember train --data "$data" "${split[@]}" "${arch[@]}" "${train[@]}" --out "$out"
    checkpoint=$out/checkpoint.safetensors
  elif [ ${#train[@]} -gt 0 ]; then
    echo "model-to-firmware.sh: --checkpoint takes no training options (${train[*]})" >&2
    exit 2
  fi
  # `ember train` exports a data file's model beside its checkpoint,
  # calibrated on its training split.
  exported=$(dirname "$checkpoint")
  mkdir -p "$models"
  # One model set per directory: the firmware's build script takes the one pair.
  rm -f "$models"/*.emb
  cp "$exported/model.emb" "$models/$name.emb"
  cp "$exported/model-int8.emb" "$models/$name-int8.emb"
  ls -l "$models/$name.emb" "$models/$name-int8.emb"

  rows=(--data "$data" --test-fraction "$test_fraction" --split-seed "$split_seed")
  [ -z "$test_file" ] || rows=(--data "$test_file")
  step "held-out rows and the host's outputs: cargo xtask test-rows ${rows[*]}"
  cargo xtask test-rows --models "$(realpath "$models")" --name "$name" \
    --checkpoint "$(realpath "$checkpoint")" "${rows[@]}" --header "$header" --count "$count"

  step "firmware: build and run under QEMU (${targets[*]})"
  EMBER_FIRMWARE_MODELS=$(realpath "$models") \
    scripts/run-firmware.sh "${targets[@]}"
  exit 0
fi

if [ -n "$model" ]; then
  # A preset of the CLI (a CNN): its graph files on the board.
  case $model in
    cnn) ;;
    *) echo "model-to-firmware.sh: --model $model: the firmware runs the CLI's cnn preset (or an MLP: --layers)" >&2; exit 2 ;;
  esac
  [ -z "$layers" ] || { echo "model-to-firmware.sh: --model cnn takes no --layers" >&2; exit 2; }
  [ ${#targets[@]} -gt 0 ] || targets=(thumbv7em-none-eabihf thumbv6m-none-eabi)
  [ -n "$models" ] || models=$out/models
  [ -n "$count_given" ] || count=100
  if [ "$(realpath -m "$models")" = "$(realpath firmware-example/models)" ]; then
    echo "model-to-firmware.sh: a CNN goes to its own --models directory, not firmware-example/models (the committed MLP's, which the firmware fine-tunes)" >&2
    exit 2
  fi
  dataset=()
  [ -z "$data" ] || dataset=(--data "$data")
  name=fashion-cnn
  if [ -z "$checkpoint" ]; then
    case " ${train[*]-} " in *" --epochs"*) ;; *) train+=(--epochs 5) ;; esac
    case " ${train[*]-} " in *" --seed"*) ;; *) train+=(--seed 0) ;; esac
    step "train: ember train --model cnn ${dataset[*]-} ${train[*]} --out $out"
    ember train --model cnn "${dataset[@]}" "${train[@]}" --out "$out"
    exported=$out
  else
    if [ ${#train[@]} -gt 0 ]; then
      echo "model-to-firmware.sh: --checkpoint takes no training options (${train[*]})" >&2
      exit 2
    fi
    step "export: ember export --checkpoint $checkpoint ${dataset[*]-} --out $out/export"
    ember export --checkpoint "$checkpoint" "${dataset[@]}" --out "$out/export"
    exported=$out/export
  fi
  mkdir -p "$models"
  # One model set per directory: the firmware's build script takes the one pair.
  rm -f "$models"/*.emb "$models/test-rows.bin"
  cp "$exported/model.emb" "$models/$name.emb"
  cp "$exported/model-int8.emb" "$models/$name-int8.emb"
  ls -l "$models/$name.emb" "$models/$name-int8.emb"

  step "test images and the host's outputs: cargo xtask test-images --count $count"
  cargo xtask test-images --models "$(realpath "$models")" --name "$name" --count "$count" "${dataset[@]}"

  # The firmware fine-tunes the CNN's head (its last layer) on shifted
  # images and checks it against the host's: the same code on the host
  # writes the head's and the adapted file's CRCs beside the model.
  step "fine-tuning the CNN's head on the host: the CRCs for the firmware to match"
  rm -f "$models"/finetune-*.crc32
  EMBER_FIRMWARE_MODELS=$(realpath "$models") EMBER_UPDATE_FINETUNE=1 \
    cargo test -q -p ember-firmware host_finetuning

  run=()
  m0=""
  for t in "${targets[@]}"; do
    case $t in
      thumbv6m*) m0=$t ;;
      *) run+=("$t") ;;
    esac
  done
  status=0
  if [ ${#run[@]} -gt 0 ]; then
    step "firmware: build and run under QEMU (${run[*]})"
    EMBER_FIRMWARE_MODELS=$(realpath "$models") \
      scripts/run-firmware.sh "${run[@]}" || status=$?
  fi
  if [ -n "$m0" ]; then
    # The int8 graph's arena (header bytes 28..32) and the image beside it.
    arena=$(od -An -t u4 -j 28 -N 4 "$models/$name-int8.emb" | tr -d ' ')
    step "firmware: the Cortex-M0 build, int8, on QEMU's mps2-an385 (a Cortex-M3 running its ARMv6-M code): the int8 CNN's $arena-byte arena and 784-byte quantized image do not fit the micro:bit's 16 KiB of RAM beside a stack"
    rc=0
    EMBER_FIRMWARE_MODELS=$(realpath "$models") \
      EMBER_FIRMWARE_MACHINE=mps2-an385 scripts/run-firmware.sh "$m0" || rc=$?
    [ "$status" -ne 0 ] || status=$rc
  fi
  exit "$status"
fi

# FashionMNIST (an IDX directory as --data, or the default data).
[ -z "$data" ] || train+=(--data "$data")
[ -n "$models" ] || models=firmware-example/models
layers=${layers:-784-128-64-10}
activation=${activation:-relu}
case $layers in 784-*) ;; *) echo "model-to-firmware.sh: the firmware's test images have 784 pixels: --layers must start with 784" >&2; exit 2 ;; esac
case " ${train[*]-} " in *" --epochs"*) ;; *) train+=(--epochs 10) ;; esac
case " ${train[*]-} " in *" --seed"*) ;; *) train+=(--seed 0) ;; esac
name=fashion-$layers

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
EMBER_FIRMWARE_MODELS=$(realpath "$models") \
  scripts/run-firmware.sh "${targets[@]}"
