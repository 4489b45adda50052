//! The CUDA C sources of the kernels, and the codes and parameter blocks the
//! host passes to them.
//!
//! Each file under `cuda-backend/kernels/` is embedded with `include_str!`,
//! with `kernels/common.cuh` prepended, and compiled by NVRTC the first time a
//! kernel of that file runs (see [`CudaBackend`](crate::CudaBackend)). The
//! formulas are ember-nn-core's ([`Map`], [`Zip`], [`Update`] and the reference
//! kernels of `ember_nn_core::backend::kernels`); the codes below must match the
//! `#define`s at the top of each `.cu` file.

use ember_nn_core::backend::Map;
use ember_nn_core::backend::Reduce;
use ember_nn_core::backend::Update;
use ember_nn_core::backend::Window;
use ember_nn_core::backend::Zip;

use crate::{CudaError, Image, Target};

/// One CUDA C source file and the kernels it defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSource {
    /// The file's name under `cuda-backend/kernels/`.
    pub file: &'static str,
    /// The text NVRTC compiles: `common.cuh` followed by the file.
    pub source: &'static str,
    /// The `extern "C" __global__` functions it defines.
    pub kernels: &'static [&'static str],
}

macro_rules! source {
    ($file:literal, [$($kernel:literal),* $(,)?]) => {
        KernelSource {
            file: $file,
            source: concat!(
                include_str!("../kernels/common.cuh"),
                "\n// ---- ", $file, " ----\n",
                include_str!(concat!("../kernels/", $file))
            ),
            kernels: &[$($kernel),*],
        }
    };
}

/// Index of each file in [`SOURCES`] (the backend caches one compiled module per file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum File {
    Fill = 0,
    Copy,
    Map,
    Zip,
    Reduce,
    Expand,
    Softmax,
    Transpose,
    Update,
    Window,
}

/// Every kernel source, in the order of `File`.
pub const SOURCES: [KernelSource; 10] = [
    source!("fill.cu", ["ember_fill"]),
    source!("copy.cu", ["ember_copy", "ember_copy_serial"]),
    source!(
        "map.cu",
        [
            "ember_map",
            "ember_map_backward",
            "ember_bias_act",
            "ember_act_backward",
        ]
    ),
    source!("zip.cu", ["ember_zip", "ember_zip_backward"]),
    source!(
        "reduce.cu",
        [
            "ember_reduce_serial",
            "ember_reduce_block",
            "ember_max_backward_serial",
            "ember_max_backward_block",
        ]
    ),
    source!("expand.cu", ["ember_expand"]),
    source!(
        "softmax.cu",
        [
            "ember_softmax_serial",
            "ember_softmax_block",
            "ember_softmax_backward_serial",
            "ember_softmax_backward_block",
            "ember_cross_entropy_serial",
            "ember_cross_entropy_block",
            "ember_cross_entropy_backward_serial",
            "ember_cross_entropy_backward_block",
        ]
    ),
    source!("transpose.cu", ["ember_transpose"]),
    source!("update.cu", ["ember_update"]),
    source!(
        "window.cu",
        [
            "ember_unfold",
            "ember_fold",
            "ember_max_pool",
            "ember_max_pool_backward",
        ]
    ),
];

/// Compiles one kernel source with NVRTC, without a device: what the backend
/// does at a kernel's first use ([`Target::Cubin`] for the device's compute
/// capability). Needs only libnvrtc; see [`crate::Target`] for the options.
pub fn compile(source: &KernelSource, target: Target) -> Result<Image, CudaError> {
    crate::sys::compile(source.file, source.source, target)
}

/// Threads per block of every one-dimensional launch (`BLOCK` in common.cuh).
pub(crate) const BLOCK: u32 = 256;

/// The function code and its two parameters for `map.cu` (`MAP_*` there).
pub(crate) fn map_code(f: Map) -> (i32, f32, f32) {
    match f {
        Map::Neg => (0, 0.0, 0.0),
        Map::AddScalar(c) => (1, c, 0.0),
        Map::MulScalar(c) => (2, c, 0.0),
        Map::Pow(p) => (3, p, 0.0),
        Map::Recip => (4, 0.0, 0.0),
        Map::Exp => (5, 0.0, 0.0),
        Map::Ln => (6, 0.0, 0.0),
        Map::Sqrt => (7, 0.0, 0.0),
        Map::Abs => (8, 0.0, 0.0),
        Map::Sin => (9, 0.0, 0.0),
        Map::Cos => (10, 0.0, 0.0),
        Map::Tanh => (11, 0.0, 0.0),
        Map::Sigmoid => (12, 0.0, 0.0),
        Map::Relu => (13, 0.0, 0.0),
        Map::LeakyRelu(s) => (14, s, 0.0),
        Map::Elu(a) => (15, a, 0.0),
        Map::Selu => (16, 0.0, 0.0),
        Map::Silu => (17, 0.0, 0.0),
        Map::GeluTanh => (18, 0.0, 0.0),
        Map::GeluErf => (19, 0.0, 0.0),
        Map::Softsign => (20, 0.0, 0.0),
        Map::Softplus => (21, 0.0, 0.0),
        Map::Clamp(lo, hi) => (22, lo, hi),
    }
}

/// The function code for `zip.cu` (`ZIP_*` there).
pub(crate) fn zip_code(f: Zip) -> i32 {
    match f {
        Zip::Add => 0,
        Zip::Sub => 1,
        Zip::Mul => 2,
        Zip::Div => 3,
    }
}

/// The reduction code for `reduce.cu` (`REDUCE_*` there).
pub(crate) fn reduce_code(op: Reduce) -> i32 {
    match op {
        Reduce::Sum => 0,
        Reduce::Max => 1,
        Reduce::ArgMax => 2,
    }
}

/// `window.cu`'s `WindowParams`: a [`Window`]'s geometry, passed to the
/// kernels by value (sixteen `u64`s, the last unused, no padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WindowParams {
    pub dims: [u64; 16],
}

impl WindowParams {
    pub(crate) fn of(w: &Window) -> Self {
        let u = |v: usize| v as u64;
        WindowParams {
            dims: [
                u(w.batch),
                u(w.channels),
                u(w.input[0]),
                u(w.input[1]),
                u(w.kernel[0]),
                u(w.kernel[1]),
                u(w.stride[0]),
                u(w.stride[1]),
                u(w.dilation[0]),
                u(w.dilation[1]),
                u(w.pad[0]),
                u(w.pad[1]),
                u(w.output[0]),
                u(w.output[1]),
                u(w.groups.max(1)),
                0,
            ],
        }
    }
}

/// `update.cu`'s `UpdateParams`: one optimizer step's hyper-parameters,
/// passed to the kernel by value. The layout is C's (two `int`s, then
/// `float`s, no padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct UpdateParams {
    pub rule: i32,
    pub flags: i32,
    pub lr: f32,
    pub weight_decay: f32,
    pub eps: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub alpha: f32,
    pub bias1: f32,
    pub bias2_sqrt: f32,
}

const FLAG_NESTEROV: i32 = 1;
const FLAG_FIRST: i32 = 2;
const FLAG_DECOUPLED: i32 = 4;
const FLAG_CENTERED: i32 = 8;
const FLAG_AMSGRAD: i32 = 16;

impl UpdateParams {
    /// The parameter block for `rule` (`RULE_*` and `FLAG_*` in update.cu).
    pub(crate) fn from_rule(rule: &Update) -> Self {
        let flag = |on: bool, bit: i32| if on { bit } else { 0 };
        match *rule {
            Update::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
                first,
            } => UpdateParams {
                rule: 0,
                flags: flag(nesterov, FLAG_NESTEROV) | flag(first, FLAG_FIRST),
                lr,
                weight_decay,
                momentum,
                dampening,
                ..Default::default()
            },
            Update::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                amsgrad,
                bias1,
                bias2_sqrt,
            } => UpdateParams {
                rule: 1,
                flags: flag(decoupled, FLAG_DECOUPLED) | flag(amsgrad, FLAG_AMSGRAD),
                lr,
                weight_decay,
                eps,
                beta1,
                beta2,
                bias1,
                bias2_sqrt,
                ..Default::default()
            },
            Update::RmsProp {
                lr,
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
            } => UpdateParams {
                rule: 2,
                flags: flag(centered, FLAG_CENTERED),
                lr,
                weight_decay,
                eps,
                momentum,
                alpha,
                ..Default::default()
            },
            Update::Adagrad {
                lr,
                eps,
                weight_decay,
            } => UpdateParams {
                rule: 3,
                lr,
                weight_decay,
                eps,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes sent to the kernels are the ones their `#define`s give.
    #[test]
    fn codes_match_the_cuda_defines() {
        let define = |file: &str, name: &str| -> i32 {
            // common.cuh is the start of every source.
            let src = SOURCES
                .iter()
                .find(|s| s.file == file || file == "common.cuh")
                .unwrap()
                .source;
            let line = src
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} is not defined in {file}"));
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        let maps = [
            (Map::Neg, "MAP_NEG"),
            (Map::AddScalar(1.0), "MAP_ADD_SCALAR"),
            (Map::MulScalar(1.0), "MAP_MUL_SCALAR"),
            (Map::Pow(1.0), "MAP_POW"),
            (Map::Recip, "MAP_RECIP"),
            (Map::Exp, "MAP_EXP"),
            (Map::Ln, "MAP_LN"),
            (Map::Sqrt, "MAP_SQRT"),
            (Map::Abs, "MAP_ABS"),
            (Map::Sin, "MAP_SIN"),
            (Map::Cos, "MAP_COS"),
            (Map::Tanh, "MAP_TANH"),
            (Map::Sigmoid, "MAP_SIGMOID"),
            (Map::Relu, "MAP_RELU"),
            (Map::LeakyRelu(0.1), "MAP_LEAKY_RELU"),
            (Map::Elu(1.0), "MAP_ELU"),
            (Map::Selu, "MAP_SELU"),
            (Map::Silu, "MAP_SILU"),
            (Map::GeluTanh, "MAP_GELU_TANH"),
            (Map::GeluErf, "MAP_GELU_ERF"),
            (Map::Softsign, "MAP_SOFTSIGN"),
            (Map::Softplus, "MAP_SOFTPLUS"),
            (Map::Clamp(0.0, 1.0), "MAP_CLAMP"),
        ];
        // Every Map of the conformance suite is covered.
        for f in ember_nn_core::backend::conformance::MAPS {
            assert!(
                maps.iter()
                    .any(|(m, _)| core::mem::discriminant(m) == core::mem::discriminant(&f)),
                "{f:?}"
            );
        }
        for (f, name) in maps {
            assert_eq!(map_code(f).0, define("map.cu", name), "{name}");
        }
        for (f, name) in [
            (Zip::Add, "ZIP_ADD"),
            (Zip::Sub, "ZIP_SUB"),
            (Zip::Mul, "ZIP_MUL"),
            (Zip::Div, "ZIP_DIV"),
        ] {
            assert_eq!(zip_code(f), define("zip.cu", name), "{name}");
        }
        for (op, name) in [
            (Reduce::Sum, "REDUCE_SUM"),
            (Reduce::Max, "REDUCE_MAX"),
            (Reduce::ArgMax, "REDUCE_ARGMAX"),
        ] {
            assert_eq!(reduce_code(op), define("reduce.cu", name), "{name}");
        }
        assert_eq!(define("common.cuh", "BLOCK"), BLOCK as i32);
        let rules = [
            (ember_nn_core::backend::conformance::UPDATES[0], "RULE_SGD"),
            (ember_nn_core::backend::conformance::UPDATES[4], "RULE_ADAM"),
            (
                ember_nn_core::backend::conformance::UPDATES[6],
                "RULE_RMSPROP",
            ),
            (
                ember_nn_core::backend::conformance::UPDATES[8],
                "RULE_ADAGRAD",
            ),
        ];
        for (rule, name) in rules {
            assert_eq!(
                UpdateParams::from_rule(&rule).rule,
                define("update.cu", name),
                "{name}"
            );
        }
        for (bit, name) in [
            (FLAG_NESTEROV, "FLAG_NESTEROV"),
            (FLAG_FIRST, "FLAG_FIRST"),
            (FLAG_DECOUPLED, "FLAG_DECOUPLED"),
            (FLAG_CENTERED, "FLAG_CENTERED"),
            (FLAG_AMSGRAD, "FLAG_AMSGRAD"),
        ] {
            assert_eq!(bit, define("update.cu", name), "{name}");
        }
    }

    /// `UpdateParams` is 12 four-byte fields with no padding, as in update.cu.
    #[test]
    fn update_params_layout() {
        assert_eq!(core::mem::size_of::<UpdateParams>(), 48);
        assert_eq!(core::mem::align_of::<UpdateParams>(), 4);
    }

    /// Each listed kernel is defined in its file, and each file's kernels are listed.
    #[test]
    fn every_kernel_is_listed() {
        for s in SOURCES {
            let defined: Vec<&str> = s
                .source
                .split("extern \"C\" __global__ void ")
                .skip(1)
                .map(|rest| rest.split('(').next().unwrap())
                .collect();
            assert_eq!(defined, s.kernels, "{}", s.file);
        }
    }
}
