#!/usr/bin/env bash
# Builds, here (x86-64, with Rust), what a GPU machine without Rust or network
# needs to run Ember's GPU checks, into .gpu/ (ignored by git):
#   .gpu/bin/ember, .gpu/bin/bench_train      the CLI and the benchmark
#   .gpu/bin/test-*                           ember-nn-cuda's test binaries
#   .gpu/data/                                the full FashionMNIST, if installed here
# Then, on the GPU machine, from the repository root: bash scripts/gpu-run.sh
# (see BENCHMARKS.md, "On an NVIDIA GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu
rm -rf "$out"
mkdir -p "$out/bin"

cargo build --release -p ember-nn-std --bin ember --example bench_train
cp target/release/ember target/release/examples/bench_train "$out/bin/"

# ember-nn-cuda's tests (the conformance suite included), in release mode:
# `cargo test --no-run` names each binary.
cargo test --release -p ember-nn-cuda --features conformance --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        kind = m["target"]["kind"][0]
        name = "lib" if kind == "lib" else m["target"]["name"]
        shutil.copy(m["executable"], sys.argv[1] + "/test-" + name)
' "$out/bin"
strip "$out"/bin/* 2>/dev/null || true

data=/usr/share/datasets/fashion-mnist
if [ -d "$data" ]; then
    mkdir -p "$out/data"
    cp "$data"/*-ubyte* "$out/data/"
else
    echo "note: $data is not installed (apt-get install dataset-fashion-mnist); the GPU run will use the built-in subset"
fi
du -sh "$out"/bin/* "$out"/data 2>/dev/null || true
