#!/usr/bin/env bash
# Measures the firmware's footprint: builds each variant (feature set) in
# release, sizes it with llvm-size, runs it under QEMU for the stack peaks and
# instruction counts, and prints a Markdown table (firmware-example/README.md
# and BENCHMARKS.md quote it).
#
# Usage: scripts/firmware-footprint.sh [TARGET...]
#   default: thumbv7em-none-eabihf (mps2-an386) and thumbv6m-none-eabi (microbit)
#   EMBER_FOOTPRINT_CNN=DIR adds a row for an int8 CNN (graph file) build on
#   the Cortex-M4F: DIR is a models directory that
#   `scripts/model-to-firmware.sh --model cnn --out OUT` made (OUT/models);
#   its ember-nn-core share is held to issue #27's 12 KB.
#
# Columns, in bytes:
#   flash  = .vector_table + .text + .rodata + .data (what is programmed)
#   embedded data = the embedded files: weight files, test images, labels
#            and the host's expected classes (all in .rodata, read in place)
#   code   = flash - embedded data: the program beyond the weights and test data
#   core runtime = of the code, what the variant adds to the platform-only
#            build (features `qemu`: start-up, vector table, defmt, panic,
#            exit), counted by symbol: ember-nn-core's code (for inference: the
#            parser, CRC table, signature check and kernels) and the libm and
#            compiler-builtins functions it links; the firmware's own code
#            (check loop, logging) and defmt's are left out
#   runtime target = the bound the core runtime is held to, where there is one
#            (issue #29: training XOR in 20 KB, fine-tuning in 24 KB; the int8
#            inference builds' earlier bounds)
#   ember-nn-core, libm, compiler-builtins = the core runtime by symbol group
#            (the rest of it: `core` and other small library functions)
#   RAM    = .data + .bss + the stack peak (painted stack, logged by the firmware)
# Installs what it needs when missing, as scripts/run-firmware.sh does (targets,
# qemu-system-arm, defmt-print), and llvm-size (rustup component llvm-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(thumbv7em-none-eabihf thumbv6m-none-eabi)

size_tool=$(command -v llvm-size || true)
if [ -z "$size_tool" ]; then
  ensure_components llvm-tools
  size_tool=$(first_line compgen -G "$(rustc --print sysroot)/lib/rustlib/*/bin/llvm-size")
fi
ensure_firmware_tools "${targets[@]}"

models=firmware-example/models
f32_file=$(stat -c %s "$models/fashion-784-128-64-10.emb")
int8_file=$(stat -c %s "$models/fashion-784-128-64-10-int8.emb")
out_dir=${CARGO_TARGET_DIR:-target}

variants=(
  "qemu"
  "qemu,xor"
  "qemu,int8-model"
  "qemu,f32-model"
  "qemu,f32-model,int8-model"
  "qemu,finetune"
  "qemu,xor,f32-model,int8-model,finetune"
)

# Code and read-only symbols with their sizes, hashes and LLVM suffixes removed.
symbols() {
  "$nm_tool" -S -C --radix=d "$1" | awk '$3 ~ /^[tTrR]$/ {
    n = $4; for (i = 5; i <= NF; i++) n = n " " $i
    sub(/::h[0-9a-f]{16}/, "", n); sub(/ \(\.llvm\.[0-9]+\)/, "", n); sub(/\.llvm\.[0-9]+/, "", n)
    sub(/^\.Lanon\.[0-9a-f]+\./, "anon.", n); sub(/^anon\.[0-9a-f]+\./, "anon.", n)
    print $2 + 0 "\t" n }' | sort -t$'\t' -k2
}
nm_tool=$(dirname "$size_tool")/llvm-nm
[ -x "$nm_tool" ] || nm_tool=$(command -v llvm-nm)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The bound on a build's core runtime, if it has one (an int8 CNN's is on
# its ember-nn-core share).
runtime_target() {
  case "$1 $2" in
    "thumbv7em-none-eabihf qemu,int8-model,cnn") echo "ember-nn-core ≤ 12 KB" ;;
    "thumbv7em-none-eabihf qemu,xor" | "thumbv6m-none-eabi qemu,xor") echo "≤ 20 KB" ;;
    "thumbv7em-none-eabihf qemu,finetune") echo "≤ 24 KB" ;;
    "thumbv7em-none-eabihf qemu,int8-model") echo "≤ 8,000" ;;
    "thumbv6m-none-eabi qemu,int8-model") echo "≤ 10,000" ;;
    *) echo "" ;;
  esac
}

echo "| target | features | flash | embedded data | code | core runtime | runtime target | ember-nn-core | libm | compiler-builtins | .data | .bss | stack peak | RAM |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
cnn_dir=${EMBER_FOOTPRINT_CNN:-}
if [ -n "$cnn_dir" ]; then
  cnn_dir=$(realpath "$cnn_dir")
  cnn_int8=$(first_line compgen -G "$cnn_dir/*-int8.emb")
  [ -n "$cnn_int8" ] || { echo "firmware-footprint.sh: no *-int8.emb in $cnn_dir" >&2; exit 2; }
fi
for t in "${targets[@]}"; do
  runs=("${variants[@]}")
  # The CNN row: the int8 graph file alone, on the Cortex-M4F.
  if [ -n "$cnn_dir" ] && [[ $t == thumbv7em* ]]; then runs+=("qemu,int8-model,cnn"); fi
  for features in "${runs[@]}"; do
    # Cortex-M0 builds leave the f32 model out (build.rs): skip the variants
    # that would only repeat another.
    if [[ $t == thumbv6m* && $features == *f32-model* && $features != *xor* ]]; then continue; fi
    # Nor fine-tuning (its images do not fit the micro:bit's flash).
    if [[ $t == thumbv6m* && $features == qemu,finetune ]]; then continue; fi
    # "cnn" is not a feature: it points the build at the CNN's directory.
    cargo_features=${features%,cnn}
    env_models=()
    file_i8=$int8_file
    if [ "$cargo_features" != "$features" ]; then
      env_models=(env EMBER_FIRMWARE_MODELS="$cnn_dir")
      file_i8=$(stat -c %s "$cnn_int8")
    fi
    "${env_models[@]}" cargo build -q -p ember-firmware --release --target "$t" --no-default-features --features "$cargo_features" >&2
    elf="$out_dir/$t/release/ember-firmware"
    read -r vt text rodata data bss < <("$size_tool" -A "$elf" | awk '
      $1 == ".vector_table" {vt = $2} $1 == ".text" {tx = $2} $1 == ".rodata" {ro = $2}
      $1 == ".data" {da = $2} $1 == ".bss" {bs = $2} $1 == ".uninit" {bs += $2}
      END {print vt + 0, tx + 0, ro + 0, da + 0, bs + 0}')
    log=$(EMBER_QEMU_TIMEOUT=${EMBER_QEMU_TIMEOUT:-120} "${env_models[@]}" cargo run -q -p ember-firmware --release \
      --target "$t" --no-default-features --features "$cargo_features" 2>&1) || {
      echo "$log" >&2
      echo "firmware-footprint.sh: $t $features failed" >&2
      exit 1
    }
    images=$(echo "$log" | sed -n 's/.*inference: \([0-9]*\) FashionMNIST.*/\1/p')
    images=${images:-0}
    embedded=0
    if [ "$images" -gt 0 ]; then
      embedded=$((images * 784 + images))
      if [[ $features == *f32-model* && $t != thumbv6m* ]]; then embedded=$((embedded + f32_file + images)); fi
      if [[ $features == *int8-model* || $features == *finetune* ]]; then embedded=$((embedded + file_i8 + 10 * images)); fi
      if [[ $features == *finetune* && $t != thumbv6m* ]]; then
        for f in "$models"/finetune-*; do embedded=$((embedded + $(stat -c %s "$f"))); done
      fi
    fi
    stack=$(echo "$log" | sed -n 's/.*stack used: \([0-9]*\) bytes.*/\1/p' | sort -n | tail -n 1)
    stack=${stack:-0}
    flash=$((vt + text + rodata + data))
    # Symbols the variant adds to the platform-only build ("qemu", built
    # first): the firmware's own and defmt's are the harness; the weights and
    # images (over 100 KB) and small anonymous constants (test data, format
    # tables) are not code; the 1 KiB anonymous table is the CRC-32 table,
    # counted whatever its name (anonymous symbols are named by a counter, so
    # the table's name could match an unrelated symbol of the platform build,
    # which left it out of some builds' totals and not others).
    symbols "$elf" > "$tmp/variant"
    if [ "$features" = qemu ]; then cp "$tmp/variant" "$tmp/platform-$t"; fi
    # The total, then by group: ember-nn-core, libm, compiler-builtins.
    read -r runtime core_b libm_b builtins_b < <(awk -F'\t' 'NR == FNR {base[$2] = 1; next}
      (!($2 in base) || ($2 ~ /^anon/ && $1 == 1024)) && $1 < 100000 && $2 !~ /ember_firmware|defmt/ && ($2 !~ /^anon/ || $1 == 1024) {
        s += $1
        if ($2 ~ /ember_nn_core/ || $2 ~ /^anon/) c += $1
        else if ($2 ~ /^libm::/) l += $1
        else if ($2 ~ /compiler_builtins|^__aeabi|^__[a-z0-9]+[sdt]f[0-9]|^__[a-z]+si[0-9]|^__[a-z]+di[0-9]/) b += $1
      }
      END {print s + 0, c + 0, l + 0, b + 0}' "$tmp/platform-$t" "$tmp/variant")
    echo "| $t | $features | $flash | $embedded | $((flash - embedded)) | $runtime | $(runtime_target "$t" "$features") | $core_b | $libm_b | $builtins_b | $data | $bss | $stack | $((data + bss + stack)) |"
    echo "$log" | grep -E "instructions|stack used|images in flash|finetune|PASS|FAIL" | sed "s/^/    [$t $features] /" >&2
  done
done
