//! Convolution and pooling as PyTorch computes them: forward outputs and the
//! gradients of `(y * gy).sum()` with respect to the input, the weight and
//! the bias, for the cases of `std-backend/tests/data/torch_conv.json`
//! (written by `scripts/torch-fixtures.py`): strides, dilations, groups,
//! a depthwise convolution, TFLite's SAME padding at stride 2 (one more row
//! below than above), max-pool ties inside windows and at the padding's
//! border, and average pooling that counts the padding's zeros.
//!
//! Tolerance: `1e-5` relative plus `1e-6` absolute (sums of up to 40
//! products in another order than PyTorch's). Max pooling's gradient is
//! compared exactly: it routes each output's gradient to one position.

use ember_nn_core::prelude::*;
use serde_json::Value;

const FIXTURE: &str = include_str!("../../std-backend/tests/data/torch_conv.json");

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn sizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("a size") as usize)
        .collect()
}

fn pair(v: &Value) -> [usize; 2] {
    let s = sizes(v);
    [s[0], s[1]]
}

#[track_caller]
fn close(what: &str, actual: &[f32], expected: &[f32], exact: bool) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let tol = if exact { 0.0 } else { 1e-5 * e.abs() + 1e-6 };
        assert!((a - e).abs() <= tol, "{what}[{i}]: got {a}, expected {e}");
    }
}

fn padding(case: &Value) -> Padding {
    if case["same"].as_bool() == Some(true) {
        return Padding::Same;
    }
    let p = sizes(&case["pad"]);
    Padding::Explicit {
        top: p[0],
        bottom: p[1],
        left: p[2],
        right: p[3],
    }
}

/// Runs one case: the op on parameters made from its inputs, then the
/// output and the gradients against PyTorch's.
fn check_case(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let op = case["op"].as_str().unwrap();
    let mut buf = vec![0.0f32; 1 << 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let xs = sizes(&case["x_shape"]);
    // Parameters flat, reshaped in the graph: the shapes are the case's.
    let flat = |mem: &mut Memory<'_, Cpu>, v: &Value| {
        let v = floats(v);
        mem.param_shaped((v.len(),), &v).unwrap()
    };
    let x = flat(&mut mem, &case["x"]);
    let ws = case.get("w_shape").map(sizes).unwrap_or_default();
    let w = case.get("w").map(|w| flat(&mut mem, w));
    let b = case.get("b").map(|b| flat(&mut mem, b));
    let gy = floats(&case["gy"]);
    let pool = || PoolOptions {
        kernel: pair(&case["kernel"]),
        stride: Some(pair(&case["stride"])),
        padding: padding(case),
        dilation: pair(&case["dilation"]),
    };
    let conv = || ConvOptions {
        stride: pair(&case["stride"]),
        padding: padding(case),
        dilation: pair(&case["dilation"]),
        groups: case["groups"].as_u64().unwrap() as usize,
    };
    let y = {
        let g = Graph::new(&mut mem);
        let xt = g.param(&x);
        let bt = b.as_ref().map(|b| g.param(b));
        let wt = w.as_ref().map(|w| g.param(w));
        let x4 = || xt.reshape_to((xs[0], xs[1], xs[2], xs[3]));
        let x3 = || xt.reshape_to((xs[0], xs[1], xs[2]));
        match op {
            "conv2d" => {
                let w4 = wt.unwrap().reshape_to((ws[0], ws[1], ws[2], ws[3]));
                backward(x4().conv2d(w4, bt, conv()), &gy)
            }
            "conv1d" => {
                let w3 = wt.unwrap().reshape_to((ws[0], ws[1], ws[2]));
                backward(x3().conv1d(w3, bt, conv()), &gy)
            }
            "max_pool2d" => backward(x4().max_pool2d(pool()), &gy),
            "avg_pool2d" => backward(x4().avg_pool2d(pool()), &gy),
            "max_pool1d" => backward(x3().max_pool1d(pool()), &gy),
            "avg_pool1d" => backward(x3().avg_pool1d(pool()), &gy),
            "global_avg_pool2d" => backward(x4().global_avg_pool2d(), &gy),
            other => panic!("unknown op {other}"),
        }
    };
    let grad = |p: &Param<(usize,)>| {
        let mut v = vec![0.0; p.shape.0];
        mem.read(p.grad, &mut v).unwrap();
        v
    };
    close(&format!("{name}: y"), &y, &floats(&case["y"]), false);
    let exact = op.starts_with("max_pool");
    close(
        &format!("{name}: x grad"),
        &grad(&x),
        &floats(&case["x_grad"]),
        exact,
    );
    if let Some(w) = &w {
        close(
            &format!("{name}: weight grad"),
            &grad(w),
            &floats(&case["w_grad"]),
            false,
        );
    }
    if let Some(b) = &b {
        close(
            &format!("{name}: bias grad"),
            &grad(b),
            &floats(&case["b_grad"]),
            false,
        );
    }
}

/// The output's values, after a backward pass seeded with `gy`.
fn backward<S: Shape>(y: Tensor<'_, S, Cpu>, gy: &[f32]) -> Vec<f32> {
    let values = y.to_vec().expect("the op runs");
    y.backward_with(gy).expect("backward");
    values
}

#[test]
fn convolutions_and_pooling_match_pytorch() {
    let fixture: Value = serde_json::from_str(FIXTURE).expect("the fixture parses");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 11);
    for case in cases {
        check_case(case);
    }
}

/// PyTorch's `padding='same'` at stride 1 and TFLite's SAME at stride 2
/// resolve as the fixture's explicit paddings say.
#[test]
fn same_padding_is_tflites() {
    let (before, after) = Padding::Same.resolve([49, 10], [10, 4], [2, 2], [1, 1]);
    assert_eq!((before, after), ([4, 1], [5, 1]));
    let (before, after) = Padding::Same.resolve([5, 5], [3, 3], [1, 1], [2, 2]);
    assert_eq!((before, after), ([2, 2], [2, 2]));
}
