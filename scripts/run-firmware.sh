#!/usr/bin/env bash
# Builds the firmware example (firmware-example/, package ember-firmware) in
# release and runs it under QEMU. With no allocator, it trains a small MLP on
# XOR, then classifies the embedded FashionMNIST test images with the
# committed 784-128-64-10 model (f32 and int8; int8 only on Cortex-M0), read
# in place from flash; the Cortex-M4F then fine-tunes the int8 model's head.
# It exits 0 only if the loss fell, all four XOR points are right, and every
# image gets the class the host computed for it.
# Nothing is trained on the host: the models and test data are the files
# committed in firmware-example/models/ (scripts/model-to-firmware.sh remakes them).
# Installs what is missing: the Rust targets, qemu-system-arm or (RISC-V)
# qemu-system-misc (apt) and defmt-print (cargo install, several minutes the
# first time).
#
# Usage: scripts/run-firmware.sh [TARGET...]
#   thumbv7em-none-eabihf        Cortex-M4F on QEMU's mps2-an386
#   thumbv6m-none-eabi           Cortex-M0 on QEMU's microbit (soft float)
#   riscv32imc-unknown-none-elf  RISC-V (ESP32-C3 class) on QEMU's virt (soft
#                                float; no fine-tuning)
# With no argument all three run. Exit status: 0 when every run passes, otherwise
# the first failure's (1: the firmware failed, 124: QEMU timed out).
# EMBER_QEMU_TIMEOUT sets QEMU's time limit in seconds (default 120).
# EMBER_FIRMWARE_MODELS: the model directory the firmware embeds (default
# firmware-example/models; see firmware-example/build.rs).
# EMBER_FIRMWARE_MACHINE=mps2-an385: the Cortex-M0 build is made for QEMU's
# mps2-an385 (a Cortex-M3 that runs its ARMv6-M code as is, with 4 MiB of
# RAM) and run there instead of on the micro:bit (16 KiB): the M0's
# instruction counts for a model the micro:bit cannot hold (a CNN's arena).
# EMBER_FIRMWARE_FEATURES: extra cargo features of ember-firmware.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf)

step "tools"
ensure_firmware_tools "${targets[@]}"
case " ${targets[*]}" in *" thumb"*) first_line qemu-system-arm --version ;; esac
case " ${targets[*]}" in *" riscv32"*) first_line qemu-system-riscv32 --version ;; esac
first_line defmt-print --version

features=()
[ -z "${EMBER_FIRMWARE_FEATURES:-}" ] || features=(--features "$EMBER_FIRMWARE_FEATURES")

status=0
for t in "${targets[@]}"; do
  step "build ember-firmware for $t (release)"
  cargo build -p ember-firmware --release --target "$t" "${features[@]}"
  elf="${CARGO_TARGET_DIR:-target}/$t/release/ember-firmware"
  if command -v llvm-size >/dev/null; then llvm-size "$elf"; fi

  step "run under QEMU ($t)"
  # Cargo's runner for the target (.cargo/config.toml): QEMU piped into defmt-print.
  rc=0
  if [ "$t" = thumbv6m-none-eabi ] && [ "${EMBER_FIRMWARE_MACHINE:-}" = mps2-an385 ]; then
    # The Cortex-M0 build on mps2-an385 (a Cortex-M3) rather than the runner's micro:bit.
    firmware-example/qemu-run.sh mps2-an385 "$elf" || rc=$?
  else
    cargo run -q -p ember-firmware --release --target "$t" "${features[@]}" || rc=$?
  fi
  echo "exit status: $rc"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
done
exit "$status"
