#!/usr/bin/env bash
# Runs a firmware ELF under QEMU and decodes its defmt log (semihosting output
# on stdout) with defmt-print. Cargo's runner for the bare-metal targets.
# Usage: qemu-run.sh MACHINE ELF
#   MACHINE: mps2-an386 (Cortex-M4F, thumbv7em-none-eabihf)
#            microbit   (Cortex-M0,  thumbv6m-none-eabi)
# Exit status: the firmware's verdict (0 pass, 1 fail), 124 on timeout
# (EMBER_QEMU_TIMEOUT seconds, default 120).
# -icount shift=0 makes QEMU's virtual time one nanosecond per instruction,
# so the firmware's SysTick timing counts instructions, deterministically.
set -euo pipefail
machine=${1:?usage: qemu-run.sh MACHINE ELF}
elf=${2:?usage: qemu-run.sh MACHINE ELF}
case $machine in
  mps2-an386) cpu=(-cpu cortex-m4) ;;
  microbit) cpu=() ;;
  *) echo "qemu-run.sh: unknown machine $machine" >&2; exit 2 ;;
esac
timeout "${EMBER_QEMU_TIMEOUT:-120}" \
  qemu-system-arm "${cpu[@]}" -machine "$machine" -nographic \
  -semihosting-config enable=on,target=native -icount shift=0 \
  -kernel "$elf" </dev/null |
  defmt-print -e "$elf"
