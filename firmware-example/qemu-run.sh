#!/usr/bin/env bash
# Runs a firmware ELF under QEMU and decodes its defmt log with defmt-print.
# Cargo's runner for the bare-metal targets.
# Usage: qemu-run.sh MACHINE ELF
#   MACHINE: mps2-an386 (Cortex-M4F, thumbv7em-none-eabihf)
#            microbit   (Cortex-M0,  thumbv6m-none-eabi)
#            mps2-an385 (Cortex-M3 running a thumbv6m-none-eabi build made
#                        with EMBER_FIRMWARE_MACHINE=mps2-an385)
#            riscv-virt (RISC-V,     riscv32imc-unknown-none-elf; QEMU's virt)
# The log: semihosting output on the Arm machines, the 16550 UART on the
# virt; either way on QEMU's stdout.
# Exit status: the firmware's verdict (0 pass, 1 fail; semihosting exit on
# Arm, the SiFive test device on the virt), 124 on timeout
# (EMBER_QEMU_TIMEOUT seconds, default 120).
# -icount shift=0 makes QEMU's virtual time one nanosecond per instruction,
# so the firmware's SysTick timing counts instructions, deterministically
# (on RISC-V the firmware reads the instruction count itself, minstret).
set -euo pipefail
machine=${1:?usage: qemu-run.sh MACHINE ELF}
elf=${2:?usage: qemu-run.sh MACHINE ELF}
case $machine in
  mps2-an386)
    qemu=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386
      -semihosting-config enable=on,target=native) ;;
  mps2-an385)
    # A Cortex-M3: runs a Cortex-M0 build (ARMv6-M code) made with
    # EMBER_FIRMWARE_MACHINE=mps2-an385 (firmware-example/build.rs).
    qemu=(qemu-system-arm -cpu cortex-m3 -machine mps2-an385
      -semihosting-config enable=on,target=native) ;;
  microbit)
    qemu=(qemu-system-arm -machine microbit
      -semihosting-config enable=on,target=native) ;;
  riscv-virt)
    # -bios none: no OpenSBI; the reset code jumps to the ELF at 0x8000_0000.
    qemu=(qemu-system-riscv32 -machine virt -bios none) ;;
  *) echo "qemu-run.sh: unknown machine $machine" >&2; exit 2 ;;
esac
timeout "${EMBER_QEMU_TIMEOUT:-120}" \
  "${qemu[@]}" -nographic -icount shift=0 -kernel "$elf" </dev/null |
  defmt-print -e "$elf"
