# Shared helpers for the scripts under scripts/ and .ci/ (sourced, not run).
#
# Every script runs under `set -euo pipefail`. A pipeline whose consumer stops
# reading early (`head -n 1`, `grep -q`) can kill its producer with SIGPIPE or
# make it fail writing ("failed printing to stdout: Broken pipe"), and
# pipefail turns that into the script's failure, depending on timing. So no
# script pipes a command into a consumer that may stop early: the helpers
# below capture a command's whole output first, then read it.

# The first line of what a command prints (stdout and stderr); the command's
# own exit status is ignored (a `--version` that prints and then fails still
# names its version).
first_line() {
  local out
  out=$("$@" 2>&1) || true
  printf '%s\n' "${out%%$'\n'*}"
}

# Succeeds when a line of the command's output matches the extended regular
# expression PATTERN: `has_line PATTERN CMD...`.
has_line() {
  local pattern=$1 out
  shift
  out=$("$@" 2>/dev/null) || return 1
  grep -Eq -- "$pattern" <<<"$out"
}

# Installs a Debian package when its command is missing (as root, or through sudo).
ensure_apt() {
  local cmd=$1 pkg=$2 sudo=""
  command -v "$cmd" >/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg"
}

# Adds the rustup targets that are not installed.
ensure_targets() {
  local t
  for t in "$@"; do
    has_line "^$t\$" rustup target list --installed || rustup target add "$t"
  done
}

# Adds the rustup components (rustfmt, clippy, llvm-tools) that are not installed.
ensure_components() {
  local c
  for c in "$@"; do
    has_line "^$c" rustup component list --installed || rustup component add "$c"
  done
}

# The defmt-print the firmware's runner decodes its log with, pinned to a
# version that reads the defmt wire format of Cargo.lock's defmt 1.x and
# builds with this toolchain (an unpinned install takes whatever is newest on
# the day, which may need a newer rustc or another wire format).
DEFMT_PRINT_VERSION=1.2.0
ensure_defmt_print() {
  if command -v defmt-print >/dev/null; then return 0; fi
  echo "installing defmt-print $DEFMT_PRINT_VERSION (cargo install, once per machine)"
  cargo install defmt-print --version "=$DEFMT_PRINT_VERSION" --locked
}

# Everything running the firmware under QEMU needs, for the given Rust
# targets: the targets, the QEMU of each (Cortex-M: qemu-system-arm; RISC-V:
# qemu-system-riscv32, in Debian's qemu-system-misc) and defmt-print.
ensure_firmware_tools() {
  local t
  ensure_targets "$@"
  for t in "$@"; do
    case $t in
      thumb*) ensure_apt qemu-system-arm qemu-system-arm ;;
      riscv32*) ensure_apt qemu-system-riscv32 qemu-system-misc ;;
    esac
  done
  ensure_defmt_print
}
