#!/usr/bin/env bash
# Checks that the library crates are publishable, as crates.io would see them:
#
#   package  `cargo package` of every published crate in dependency order
#            (ember-nn-derive, ember-nn-core, ember-nn-cuda, ember-nn-std),
#            then builds them from the .crate files alone, in a scratch
#            workspace outside this one (versioned dependencies, each other's
#            packages patched in for crates.io): the libraries, the `ember`
#            binary, every test target, and the tests that read files shipped
#            in the package. A crate of a user's, outside the workspace,
#            depends on the packaged core by version with default features off
#            and builds for thumbv6m-none-eabi and thumbv7em-none-eabihf.
#   msrv     every published crate's library builds with the `rust-version`
#            the workspace declares (installs that toolchain when missing).
#   install  `cargo install --path std-backend` into an empty root gives
#            `ember`, and `ember --version` names the workspace's version.
#
# Usage: scripts/package.sh [package|msrv|install]...   (no argument: all three)
# Scratch files go under ${CARGO_TARGET_DIR:-target}/package-check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

step() { printf '\n==> %s\n' "$*"; }

# Dependency order: each crate's path dependencies come before it.
CRATES=(ember-nn-derive ember-nn-core ember-nn-cuda ember-nn-std)
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
scratch=$target/package-check
version=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print({p["name"]: p["version"] for p in json.load(sys.stdin)["packages"]}["ember-nn-core"])')
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)

package() {
  step "cargo package: ${CRATES[*]} (version $version)"
  local args=() c
  for c in "${CRATES[@]}"; do args+=(-p "$c"); done
  # --no-verify: the scratch workspace below builds the packages instead
  # (the same check and more: tests too), so nothing is compiled twice.
  cargo package --no-verify "${args[@]}" --target-dir "$scratch/out"

  step "build the packages alone, outside this workspace"
  local ws=$scratch/ws members="" patches=""
  rm -rf "$ws"
  mkdir -p "$ws"
  for c in "${CRATES[@]}"; do
    tar -xzf "$scratch/out/package/$c-$version.crate" -C "$ws"
    members+="\"$c-$version\", "
    patches+="$c = { path = \"$c-$version\" }"$'\n'
  done
  mkdir -p "$ws/user-firmware/src"
  cat >"$ws/Cargo.toml" <<EOF
[workspace]
resolver = "2"
members = [${members}"user-firmware"]

# The packages stand in for crates.io: each depends on the others by version.
[patch.crates-io]
$patches
# As the workspace's: the dependencies' builds from the test run are reused.
[profile.dev.package."*"]
opt-level = 2
EOF
  # A user's no_std crate: trains a step and runs a deployable file, with
  # nothing from the workspace but the packaged core, by version.
  cat >"$ws/user-firmware/Cargo.toml" <<EOF
[package]
name = "user-firmware"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
ember-nn-core = { version = "$version", default-features = false }
EOF
  cat >"$ws/user-firmware/src/lib.rs" <<'EOF'
#![no_std]
//! A user's crate outside the Ember workspace, on the packaged core.

use ember_nn_core::deploy::{argmax_i8, FormatError, InferError, Model};
use ember_nn_core::nn::{self, loss, Build, Forward, Linear, Optimizer, ReLU, Rule};
use ember_nn_core::prelude::*;

/// The model: 4 inputs, 3 classes.
pub type Net = (Linear<4, 8>, ReLU, Linear<8, 3>);
/// A batch-4 SGD step's memory, known at compile time.
pub const FLOATS: usize = nn::train_floats::<Net>(4, loss::Loss::CrossEntropy, Rule::sgd());

/// Builds the model in `buf` and takes one SGD step on four rows.
pub fn train_step(buf: &mut [f32; FLOATS], xs: &[f32; 16], ys: &[usize; 4]) -> Result<f32> {
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Net::build(&mut mem, &mut Rng::new(0))?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::sgd(), 0.1)?;
    opt.zero_grad(&mut mem)?;
    let value = {
        let g = Graph::new(&mut mem);
        let l = loss::cross_entropy(
            model.forward(g.from_slice((4, Const::<4>), xs)),
            ys,
            loss::Reduction::Mean,
        );
        l.backward()?;
        l.item()?
    };
    opt.step(&mut mem)?;
    Ok(value)
}

/// Why a file could not classify.
#[derive(Debug)]
pub enum ClassifyError {
    /// The file was rejected.
    Format(FormatError),
    /// The input or scratch did not fit.
    Infer(InferError),
}

/// Loads an int8 `.emb` in place and classifies one input.
pub fn classify(file: &[u8], input: &[u8; 4], scratch: &mut [i8; 16]) -> core::result::Result<usize, ClassifyError> {
    let model = Model::load::<Net>(file).map_err(ClassifyError::Format)?;
    let logits = model.infer_u8(input, scratch).map_err(ClassifyError::Infer)?;
    Ok(argmax_i8(logits))
}
EOF
  # The workspace's lock file as a start (the same dependency versions as
  # the tests ran with); cargo adds what is missing.
  cp Cargo.lock "$ws/"
  (
    cd "$ws"
    # The workspace's target directory: the crates.io dependencies built for
    # its tests (same versions, features and profile) are not built again.
    export CARGO_TARGET_DIR=$target
    # Every published crate's libraries, binaries, examples and tests, from
    # the packages alone: a file a test includes that the package lacks
    # fails here.
    cargo test --workspace --all-features --no-run
    # The tests that read files at run time (data, fixtures, the `ember`
    # binary's subset): from the package's own copies.
    cargo test -p ember-nn-core --all-features --test deploy --test fuzz_regressions
    cargo test -p ember-nn-std --all-features --test pytorch_import --test data_fashion_mnist \
      --test fuzz_regressions
    ensure_targets thumbv6m-none-eabi thumbv7em-none-eabihf
    for t in thumbv6m-none-eabi thumbv7em-none-eabihf; do
      step "a user's crate on the packaged ember-nn-core $version, default features off: $t"
      cargo build -p user-firmware --target "$t"
    done
  )
}

msrv() {
  step "the declared rust-version ($msrv) builds every published crate"
  if ! has_line "^$msrv" rustup toolchain list &&
    ! rustup toolchain install "$msrv" --profile minimal --no-self-update; then
    # A machine that cannot fetch toolchains: said loudly, not failed (the
    # claim is checked wherever the toolchain installs, as on CI's machine).
    echo "WARNING: could not install Rust $msrv: rust-version is NOT checked in this run" >&2
    return 0
  fi
  local args=() c
  for c in "${CRATES[@]}"; do args+=(-p "$c"); done
  cargo "+$msrv" check --locked "${args[@]}" --all-features --lib --bins \
    --target-dir "$scratch/msrv"
  rm -rf "$scratch/msrv"
}

install() {
  step "cargo install --path std-backend into an empty root"
  local dest=$scratch/install
  rm -rf "$dest"
  cargo install --locked --path std-backend --root "$dest"
  local said
  said=$(PATH="$dest/bin:$PATH" ember --version)
  echo "$said"
  if [ "$said" != "ember $version" ]; then
    echo "ember --version said '$said', expected 'ember $version'" >&2
    exit 1
  fi
  rm -rf "$dest"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(package msrv install)
for s in "${steps[@]}"; do
  case $s in
    package | msrv | install) "$s" ;;
    *)
      echo "unknown step '$s' (package, msrv or install)" >&2
      exit 2
      ;;
  esac
done
