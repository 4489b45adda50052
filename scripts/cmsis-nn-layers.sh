#!/usr/bin/env bash
# CMSIS-NN's int8 kernels on the layers Ember's firmware runs, counted the
# way Ember's firmware counts (issue 27): instructions per layer call under
# the very QEMU command of firmware-example/qemu-run.sh (mps2-an386,
# Cortex-M4, -icount shift=0, SysTick at 40 instructions per tick), beside
# Ember's per-node counts, in one table.
#
# A benchmark, not part of the product: nothing in the workspace or its CI
# builds or needs it. It needs
#   - CMSIS-NN's sources: CMSIS_NN_DIR (git clone https://github.com/ARM-software/CMSIS-NN)
#   - CMSIS-Core's headers (cmsis_compiler.h and the rest):
#     CMSIS_CORE_DIR, e.g. CMSIS_6/CMSIS/Core/Include of
#     https://github.com/ARM-software/CMSIS_6
#   - arm-none-eabi-gcc and newlib (memcpy, memset), qemu-system-arm:
#     apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
#
# Usage: CMSIS_NN_DIR=... CMSIS_CORE_DIR=... scripts/cmsis-nn-layers.sh [EMBER_LOG...]
# EMBER_LOG: the output of Ember's firmware runs (scripts/run-firmware.sh,
# scripts/model-to-firmware.sh) whose int8 per-node lines
#   int8 node 3 conv 16x14x14 -> 32x14x14 k3x3 s1 p1 g1: N instructions, ...
# fill the Ember column: a CMSIS-NN layer and an Ember node match when their
# keys (op, shapes, kernel, stride, padding, groups) are the same. Only the
# Cortex-M4F runs count (a log's thumbv6m and riscv32 runs are skipped).
# The harness (bench/cmsis-nn/harness.c) holds the layer list; CMSIS_NN_CFLAGS
# replaces the compiler flags below; CMSIS_NN_REV names the CMSIS-NN commit
# in the log when CMSIS_NN_DIR is not a git checkout (an archive).
#
# Ember's logs for the layers in the list (Cortex-M4F, QEMU):
#   FashionMNIST CNN: scripts/model-to-firmware.sh --model cnn \
#     --data std-backend/data/fashion-mnist-subset --epochs 1 --limit 2000 \
#     --count 20 --out /tmp/cnnfw > cnn.log
#   KWS DS-CNN's layers: scripts/mlperf-tiny.sh --out /tmp/mlp kws, whose
#     /tmp/mlp/kws.log has a line per node (mlperf-kws int8 node ...), or
#     cargo xtask kws-layers --models /tmp/kws-layers &&
#     cargo xtask test-images --models /tmp/kws-layers --name kws-layers --count 4 &&
#     EMBER_FIRMWARE_MODELS=/tmp/kws-layers scripts/run-firmware.sh thumbv7em-none-eabihf > kws.log Output: the harness's log, then the table.
# Exit status: 0 when every layer ran, 1 when the harness failed, 2 when
# something it needs is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
  echo "cmsis-nn-layers.sh: $*" >&2
  echo "  (see the header of scripts/cmsis-nn-layers.sh for what it needs and where to get it)" >&2
  exit 2
}
nn=${CMSIS_NN_DIR:-}
core=${CMSIS_CORE_DIR:-}
[ -n "$nn" ] && [ -f "$nn/Include/arm_nnfunctions.h" ] ||
  missing "CMSIS_NN_DIR must name a CMSIS-NN checkout (with Include/arm_nnfunctions.h)"
[ -n "$core" ] && [ -f "$core/cmsis_compiler.h" ] ||
  missing "CMSIS_CORE_DIR must name CMSIS-Core's Include directory (with cmsis_compiler.h)"
command -v arm-none-eabi-gcc >/dev/null ||
  missing "arm-none-eabi-gcc not found: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
command -v qemu-system-arm >/dev/null || missing "qemu-system-arm not found: apt-get install qemu-system-arm"

# -mcpu=cortex-m4 defines __ARM_FEATURE_DSP: CMSIS-NN's DSP (SIMD) paths.
flags=${CMSIS_NN_CFLAGS:--mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O3}
read -r -a cflags <<<"$flags"
build=${CARGO_TARGET_DIR:-target}/cmsis-nn
mkdir -p "$build"
elf=$build/cmsis-nn-layers.elf

# The int8 kernels and what they call (s8, q7; the f16, f32, s4 and s16 ones left out).
sources=()
for d in ConvolutionFunctions PoolingFunctions FullyConnectedFunctions NNSupportFunctions; do
  for f in "$nn/Source/$d"/*.c; do
    case $(basename "$f") in
      *f16*|*f32*) ;;
      *s8*|*q7*|*get_buffer_size*) sources+=("$f") ;;
    esac
  done
done

echo "==> build: arm-none-eabi-gcc ${cflags[*]} ($(arm-none-eabi-gcc -dumpversion)); CMSIS-NN ${CMSIS_NN_REV:-$(git -C "$nn" rev-parse --short=12 HEAD 2>/dev/null || echo "(not a git checkout: CMSIS_NN_REV names it)")}"
arm-none-eabi-gcc "${cflags[@]}" -std=c11 -ffunction-sections -fdata-sections \
  -I "$nn/Include" -I "$core" -I bench/cmsis-nn \
  bench/cmsis-nn/startup.c bench/cmsis-nn/harness.c "${sources[@]}" \
  -nostartfiles --specs=nano.specs -T bench/cmsis-nn/mps2-an386.ld -Wl,--gc-sections \
  -o "$elf"
arm-none-eabi-size "$elf"

echo "==> run: Ember's QEMU command (firmware-example/qemu-run.sh mps2-an386)"
log=$build/cmsis-nn-layers.log
rc=0
timeout "${EMBER_QEMU_TIMEOUT:-120}" \
  qemu-system-arm -cpu cortex-m4 -machine mps2-an386 \
  -semihosting-config enable=on,target=native \
  -nographic -icount shift=0 -kernel "$elf" </dev/null 2>&1 | tee "$log" || rc=$?
[ "$rc" -eq 0 ] || { echo "cmsis-nn-layers.sh: the harness failed (status $rc)" >&2; exit 1; }

echo
echo "==> per layer: instructions of one int8 call on the Cortex-M4 (QEMU mps2-an386, -icount shift=0)"
awk -F' [|] ' '
  # Only the Cortex-M4F runs of a log (run-firmware.sh says which target runs).
  /^==> run under QEMU [(]/ { m4f = ($0 ~ /thumbv7em/) }
  FNR == 1 { m4f = 1 }
  # Ember: "int8 node N KEY: I instructions, ..." (the f32 lines are left
  # out), or the MLPerf Tiny firmware'"'"'s "mlperf-kws int8 node N KEY: ...".
  m4f && /^(mlperf-[a-z]+ )?int8 node [0-9]+ / {
    line = $0
    sub(/^(mlperf-[a-z]+ )?int8 node [0-9]+ /, "", line)
    key = line; sub(/: .*/, "", key)
    n = line; sub(/^[^:]*: /, "", n); sub(/ instructions.*/, "", n)
    ember[key] = n
    next
  }
  /^cmsis-nn [|] / { rows[++count] = $0 }
  END {
    printf "| layer | kernel | multiply-adds | CMSIS-NN instructions | Ember instructions | Ember / CMSIS-NN |\n"
    printf "|---|---|---:|---:|---:|---:|\n"
    for (i = 1; i <= count; i++) {
      split(rows[i], f, / [|] /)
      e = (f[2] in ember) ? ember[f[2]] : "-"
      r = (e != "-" && f[5] > 0) ? sprintf("%.2f", e / f[5]) : "-"
      printf "| %s | %s | %s | %s | %s | %s |\n", f[2], f[3], f[4], f[5], e, r
    }
  }' "$log" "$@"
