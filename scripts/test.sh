#!/usr/bin/env bash
# Runs every check of the project: formatting, lints, all tests (unit, property,
# doc, cross-crate), and the embedded builds. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components and targets"
ensure_components rustfmt clippy
ensure_targets thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf riscv32imc-unknown-none-elf

step "scripts: no pipeline into a reader that stops early (see scripts/lib.sh)"
early=$(grep -nE '\|[[:space:]]*(head|grep[[:space:]]+(-[a-zA-Z]*[qm]|--quiet|--max-count))' \
  scripts/*.sh .ci/run firmware-example/*.sh | grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' || true)
if [ -n "$early" ]; then
  printf 'a pipeline whose reader may stop early (SIGPIPE under pipefail):\n%s\n' "$early" >&2
  exit 1
fi

step "ember-nn-core: no new import cycle between its modules"
python3 scripts/module-cycles.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host crates, all targets; the firmware builds on the host as a plain program)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (firmware, bare metal: QEMU for Cortex-M4F, M0 and RISC-V, the STM32F411 board variant)"
cargo clippy -p ember-firmware --no-deps --target thumbv7em-none-eabihf -- -D warnings
cargo clippy -p ember-firmware --no-deps --target thumbv6m-none-eabi -- -D warnings
cargo clippy -p ember-firmware --no-deps --target riscv32imc-unknown-none-elf -- -D warnings
cargo clippy -p ember-firmware --no-deps --target riscv32imc-unknown-none-elf \
  --no-default-features --features qemu -- -D warnings
cargo clippy -p ember-firmware --no-deps --target thumbv7em-none-eabihf \
  --no-default-features --features stm32f411,xor,int8-model -- -D warnings
# The inference-only and platform-only variants that scripts/firmware-footprint.sh measures.
cargo clippy -p ember-firmware --no-deps --target thumbv7em-none-eabihf \
  --no-default-features --features qemu,int8-model -- -D warnings
cargo clippy -p ember-firmware --no-deps --target thumbv6m-none-eabi \
  --no-default-features --features qemu -- -D warnings

step "core without std or alloc, for Cortex-M0, Cortex-M4F, Cortex-M33 and RISC-V (riscv32imc)"
cargo build -p ember-nn-core --no-default-features --target thumbv6m-none-eabi
cargo build -p ember-nn-core --no-default-features --target thumbv7em-none-eabihf
cargo build -p ember-nn-core --no-default-features --target thumbv8m.main-none-eabihf
cargo build -p ember-nn-core --no-default-features --target riscv32imc-unknown-none-elf
cargo build -p ember-nn-core --features defmt --target thumbv7em-none-eabihf

step "firmware for a real board (STM32F411, defmt over RTT): build only"
cargo build -p ember-firmware --release --target thumbv7em-none-eabihf \
  --no-default-features --features stm32f411,xor,int8-model

step "firmware template (templates/firmware): rustfmt, clippy, release builds for Cortex-M4F, Cortex-M33 and RISC-V, run under QEMU"
scripts/template.sh

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p ember-nn-core -p ember-nn-std -p ember-nn-cuda

step "tests"
# The firmware's features but `mlperf`, whose model directory (EMBER_FIRMWARE_MODELS,
# `cargo xtask mlperf`) is not an image model's: its host test runs with the
# MLPerf Tiny step below.
cargo test --workspace --all-features --exclude ember-firmware
cargo test -p ember-firmware --features stm32f411

step "the PyTorch tutorials' idioms, ported: each example checks what it shows"
for example in seed_autograd seed_mlp_class seed_add_module seed_init_apply seed_state_dict seed_train_loop; do
  cargo run --release --quiet -p ember-nn-core --example "$example" >/dev/null
done
for example in seed_quickstart seed_save_load seed_cnn; do
  cargo run --release --quiet -p ember-nn-std --example "$example" >/dev/null
done

step "fuzzing smoke: every parser's libFuzzer target for a few seconds (the long campaign: scripts/fuzz.sh campaign)"
scripts/fuzz.sh smoke

step "firmware under QEMU (Cortex-M4F, Cortex-M0 and RISC-V): trains XOR without an allocator, classifies FashionMNIST from flash (committed models), fine-tunes the head on the M4F"
# The M4F run writes the fine-tuned model back here (semihosting): no stale copy may pass.
rm -f target/ember-finetuned.emb
scripts/run-firmware.sh

step "the model fine-tuned on the Cortex-M4F and written back: ember eval on the shifted held-out images"
scripts/eval-finetuned.sh

step "firmware for another architecture: train 784-64-32-10 tanh briefly, export, derive the model type, run under QEMU"
other=$(mktemp -d)
trap 'rm -rf "$other"' EXIT
scripts/model-to-firmware.sh --layers 784-64-32-10 --activation tanh --epochs 1 --limit 2000 \
  --models "$other/models" --out "$other/run"

step "firmware for a CNN: train the CLI's cnn preset briefly on the built-in subset, embed its graph files (f32 and int8), run 20 images under QEMU on the Cortex-M4F and the M0 (on mps2-an385), fine-tune its head on the M4F against the host's (about a minute)"
scripts/model-to-firmware.sh --model cnn --data std-backend/data/fashion-mnist-subset \
  --epochs 1 --limit 2000 --count 20 --out "$other/cnn"
# The firmware's host tests on those graph files (src/inference.rs: the host
# run gives the expected outputs, parsing, scratch sizes, quantization).
EMBER_FIRMWARE_MODELS="$other/cnn/models" cargo test -q -p ember-firmware

step "MLPerf Tiny on the Cortex-M4F: the four models (random weights, int8 calibrated on random inputs), every output the host's byte for byte; instructions, RAM, flash"
scripts/mlperf-tiny.sh --out "$other/mlperf-tiny"
# The mode's host build on one of them (the same check, the host's kernels).
EMBER_FIRMWARE_MODELS="$other/mlperf-tiny/kws" cargo test -q -p ember-firmware \
  --no-default-features --features mlperf

step "firmware on your own data: train wine (classification, --scale standard) and diabetes (regression) from their CSV files (seconds), embed held-out rows, run under QEMU on the Cortex-M4F and M0: the device's outputs are the host's"
scripts/model-to-firmware.sh --data std-backend/tests/data/tables/wine.csv --scale standard \
  --out "$other/wine"
scripts/model-to-firmware.sh --data std-backend/tests/data/tables/diabetes.csv \
  --out "$other/diabetes"

# Last: `cargo install` reuses the release build of `ember` made above.
step "publishable: cargo package of each library crate, built and tested from the packages alone; a user's no_std crate on the packaged core; the declared rust-version; cargo install of ember"
scripts/package.sh
