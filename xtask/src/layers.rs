//! `cargo xtask kws-layers`: graph files that put MLPerf Tiny KWS DS-CNN's
//! layers (core/src/nn/zoo.rs `KwsDsCnn`) in Ember's firmware, whose test
//! inputs are 28×28 images: an adapter convolution takes the 784 pixels to
//! the DS-CNN's `[1, 49, 10]` input, then the 10×4 stride-2 stem with
//! TFLite's SAME padding (`[64, 25, 5]`), ReLU, one block's depthwise 3×3
//! (SAME) and pointwise 64 → 64, each with ReLU, the global average and a
//! linear layer to 10 outputs. Weights are drawn as PyTorch initializes
//! them (untrained), the int8 file calibrated on the first test images:
//! the firmware's per-node lines count each layer's instructions, which do
//! not depend on the values (`scripts/cmsis-nn-layers.sh` sets them beside
//! CMSIS-NN's). The adapter node (1×19 kernel, 10 rows of padding above
//! and 11 below) is not a DS-CNN layer.

use ember_nn_core::nn::Build;
use ember_nn_core::nn::{Conv2d, Conv2dWith, DepthwiseConv2d, Forward, Linear};
use ember_nn_core::prelude::*;
use ember_nn_std::atomic::write_atomic;
use ember_nn_std::data::{FashionMnist, Split};
use ember_nn_std::export::{int8_file, traced_f32};
use std::path::Path;

/// Calibration images for the int8 file.
const CALIBRATION: usize = 64;

/// Writes `NAME.emb` (f32) and `NAME-int8.emb` into `dir`.
pub fn kws_layers(dir: &Path, name: &str, data: Option<&Path>, seed: u64) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut buf = vec![0.0f32; 1 << 24];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let rng = &mut Rng::new(seed);
    let adapter: Conv2dWith<1, 1, 1, 19> = Conv2dWith::new(
        ConvOptions {
            stride: [1, 1],
            padding: Padding::Explicit {
                top: 10,
                bottom: 11,
                left: 0,
                right: 0,
            },
            dilation: [1, 1],
            groups: 1,
        },
        &mut mem,
        rng,
    )
    .map_err(|x| e(&x))?;
    let stem: Conv2dWith<1, 64, 10, 4> = Conv2dWith::new(
        ConvOptions {
            stride: [2, 2],
            padding: Padding::Same,
            dilation: [1, 1],
            groups: 1,
        },
        &mut mem,
        rng,
    )
    .map_err(|x| e(&x))?;
    let depthwise = DepthwiseConv2d::<64, 3>::build(&mut mem, rng).map_err(|x| e(&x))?;
    let pointwise = Conv2d::<64, 64, 1>::build(&mut mem, rng).map_err(|x| e(&x))?;
    let fc = Linear::<64, 10>::build(&mut mem, rng).map_err(|x| e(&x))?;
    let model = (adapter, stem, depthwise, pointwise, fc);
    let f32_bytes = traced_f32(&model, &mut mem, |p| {
        let (adapter, stem, depthwise, pointwise, fc) = &model;
        let x = p.input((p.rows(), Const::<1>, Const::<28>, Const::<28>));
        let x = stem.forward(adapter.forward(x)).relu();
        let x = pointwise.forward(depthwise.forward(x).relu()).relu();
        fc.forward(x.global_avg_pool2d())
    })
    .map_err(|x| e(&x))?;
    let (test, _) = FashionMnist::load_or_builtin(data, Split::Test).map_err(|x| e(&x))?;
    let int8_bytes = int8_file(&f32_bytes, &test.into_dataset(), CALIBRATION).map_err(|x| e(&x))?;
    std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    for (file, bytes) in [
        (format!("{name}.emb"), &f32_bytes),
        (format!("{name}-int8.emb"), &int8_bytes),
    ] {
        let path = dir.join(file);
        write_atomic(&path, bytes.bytes()).map_err(|x| format!("{}: {x}", path.display()))?;
        println!("{}: {} bytes", path.display(), bytes.bytes().len());
    }
    Ok(())
}
