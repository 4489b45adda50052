#!/usr/bin/env bash
# Checks templates/firmware, the firmware crate users copy for their board:
# formatting, clippy, release builds for Cortex-M4F, Cortex-M33 and RISC-V
# (ESP32-C3 class), and a run under QEMU's mps2-an386 (Cortex-M4F) whose
# output must be the host's for the committed sample input.
#
# The template depends on the published crates by version; here it is built
# against this checkout's core/ through a [patch.crates-io] given on the
# command line, never by editing it. Builds go to $CARGO_TARGET_DIR/template
# (default target/template); the template's Cargo.lock is not committed
# (.gitignore: it would pin the patched local crate).
# Installs what is missing: the Rust targets and components, qemu-system-arm
# (apt) and defmt-print (cargo install, several minutes the first time).
# EMBER_QEMU_TIMEOUT: QEMU's time limit in seconds (default 120).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

root=$(pwd)
targets=(thumbv7em-none-eabihf thumbv8m.main-none-eabihf riscv32imc-unknown-none-elf)
# Absolute: cargo runs in the template's directory below.
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
export CARGO_TARGET_DIR=$target_dir/template
patch=(--config "patch.crates-io.ember-nn-core.path=\"$root/core\"")

step "tools"
ensure_components rustfmt clippy
ensure_firmware_tools "${targets[@]}"
first_line qemu-system-arm --version
first_line defmt-print --version

# The template's own .cargo/config.toml (its default target, `cargo qemu`)
# applies only when cargo runs in its directory.
cd templates/firmware

step "rustfmt --check (template)"
# rustfmt itself: `cargo fmt` would resolve the dependencies without the patch.
rustfmt --check --edition 2021 build.rs src/main.rs

for t in "${targets[@]}"; do
  step "clippy and release build: $t (feature board)"
  cargo clippy --target "$t" "${patch[@]}" -- -D warnings
  cargo build --release --target "$t" "${patch[@]}"
  elf=$CARGO_TARGET_DIR/$t/release/ember-firmware-template
  if command -v llvm-size >/dev/null; then llvm-size "$elf"; fi
done

step "clippy: thumbv7em-none-eabihf (feature qemu)"
cargo clippy --target thumbv7em-none-eabihf --no-default-features --features qemu \
  "${patch[@]}" -- -D warnings

step "run under QEMU (mps2-an386, Cortex-M4F): cargo qemu"
rc=0
out=$(timeout "${EMBER_QEMU_TIMEOUT:-120}" cargo qemu "${patch[@]}" 2>&1) || rc=$?
printf '%s\n' "$out"
echo "exit status: $rc"
if [ "$rc" -ne 0 ]; then
  echo "template.sh: the firmware failed under QEMU (exit status $rc)" >&2
  exit "$rc"
fi
if ! grep -Eq "^the host's output: the same$" <<<"$out"; then
  echo "template.sh: the firmware did not report the host's output" >&2
  exit 1
fi
echo "template: pass"
