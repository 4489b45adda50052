#!/usr/bin/env bash
# Coverage-guided fuzzing of every file parser (fuzz/fuzz_targets/), with
# libFuzzer on the stable toolchain: the libfuzzer-sys crate builds libFuzzer
# from its bundled source with the C++ compiler, and rustc instruments the
# code with LLVM's SanitizerCoverage through stable -C flags (no nightly, no
# cargo-fuzz, no sanitizer runtime). Debug assertions and overflow checks
# are on, so an arithmetic overflow is a crash; fuzz/src/lib.rs aborts on
# any single allocation above a limit, so a size taken on trust from the
# data is a crash too.
#
#   scripts/fuzz.sh smoke [SECONDS]              each target for SECONDS (default 4): CI's bounded run
#   scripts/fuzz.sh campaign [TARGET|all] [RUNS] the long run: RUNS executions per target
#                                                (default 10,000,000 for emb, 1,000,000 for the others)
#   scripts/fuzz.sh run TARGET FILE...           runs a target on files (reproduces a crash)
#   scripts/fuzz.sh build                        builds the targets only
#   scripts/fuzz.sh corpus                       rewrites the seed corpora fuzz/corpus/ (committed)
#
# Each target starts from its committed seeds (fuzz/corpus/TARGET, read
# only) and a working corpus kept between runs under the target directory
# ($CARGO_TARGET_DIR/fuzz, default target/fuzz), where crashes land too
# (artifacts/TARGET/). One process at a time, one core. A crash fails the
# script with the input's path; turn it into a regression test
# (core/tests/fuzz_regressions.rs, std-backend/tests/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TARGETS=(emb safetensors checkpoint idx idx_gz csv csv_table npy image)
root=$(pwd)
tdir="${CARGO_TARGET_DIR:-$root/target}/fuzz"
host_line=$(rustc -vV)
host=$(sed -n 's/^host: //p' <<<"$host_line")
bin="$tdir/$host/release"
# SanitizerCoverage as cargo-fuzz configures it (inline 8-bit counters, PC
# table, comparison tracing for libFuzzer's value profile and dictionary),
# all stable codegen options; `--cfg fuzzing` as cargo-fuzz sets it.
FUZZ_RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 2
}

# The C++ compiler libfuzzer-sys builds libFuzzer with.
ensure_tools() {
  ensure_apt c++ g++
}

build() {
  ensure_tools
  echo "==> building the fuzz targets (instrumented, release) in $tdir"
  # --target: RUSTFLAGS then apply to the targets only, not to build scripts.
  RUSTFLAGS="$FUZZ_RUSTFLAGS" CARGO_TARGET_DIR="$tdir" \
    cargo build --manifest-path fuzz/Cargo.toml --release --target "$host" --bins
}

max_len() {
  case $1 in
    emb | checkpoint) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# fuzz_one TARGET LIBFUZZER-OPTIONS...: runs one target, prints its line of
# the summary, and returns non-zero on a crash.
summary=()
fuzz_one() {
  local t=$1
  shift
  local work="$tdir/corpus/$t" art="$tdir/artifacts/$t/" log="$tdir/logs/$t.log"
  mkdir -p "$work" "$art" "$tdir/logs"
  local start end rc=0
  start=$(date +%s.%N)
  "$bin/$t" "$@" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$art" "$work" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  local out runs secs
  out=$(<"$log")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' <<<"$out")
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" -ne 0 ]; then
    local crash
    crash=$(sed -n "s/.*Test unit written to //p" <<<"$out")
    summary+=("$(printf '%-12s %12s %8s s  CRASH (exit %s): %s (log: %s)' "$t" "${runs:-?}" "$secs" "$rc" "${crash:-no input written}" "$log")")
    tail -n 40 "$log" >&2
    return 1
  fi
  summary+=("$(printf '%-12s %12s %8s s  %s exec/s, no crash' "$t" "$runs" "$secs" \
    "$(awk -v r="$runs" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')")")
}

print_summary() {
  printf '\n%-12s %12s %10s\n' target executions time
  printf '%s\n' "${summary[@]}"
}

is_target() {
  local t
  for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
  return 1
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case $cmd in
  build)
    build
    ;;
  smoke)
    secs=${1:-4}
    build
    failed=0
    for t in "${TARGETS[@]}"; do
      echo "==> smoke: $t for ${secs}s"
      fuzz_one "$t" -max_total_time="$secs" || failed=1
    done
    print_summary
    exit "$failed"
    ;;
  campaign)
    which=${1:-all}
    runs=${2:-}
    if [ "$which" = all ]; then
      list=("${TARGETS[@]}")
    elif is_target "$which"; then
      list=("$which")
    else
      echo "unknown target '$which' (one of: ${TARGETS[*]}, all)" >&2
      exit 2
    fi
    build
    failed=0
    for t in "${list[@]}"; do
      n=${runs:-$([ "$t" = emb ] && echo 10000000 || echo 1000000)}
      echo "==> campaign: $t, $n executions (log: $tdir/logs/$t.log)"
      fuzz_one "$t" -runs="$n" || failed=1
    done
    print_summary
    exit "$failed"
    ;;
  run)
    [ $# -ge 2 ] && is_target "$1" || usage
    t=$1
    shift
    build
    "$bin/$t" "$@"
    ;;
  corpus)
    # Written by the project's own writers; an uninstrumented build (the
    # example does not link libFuzzer).
    CARGO_TARGET_DIR="$tdir" cargo run --manifest-path fuzz/Cargo.toml --release \
      --example make_corpus -- fuzz/corpus
    ;;
  *)
    usage
    ;;
esac
