//! Per-node cost of a graph model (a CNN's graph files): one inference of
//! the first test image, int8 and (where the build has it) f32, with each
//! node timed through `GraphModel::infer_q8_profiled` /
//! `infer_f32_profiled`, one line per node:
//!
//! ```text
//! int8 node 3 conv 16x14x14 -> 32x14x14 k3x3 s1 p1 g1: 1234567 instructions, 903168 multiply-adds, 1.37 per multiply-add
//! ```
//!
//! The node's key (op, input and output `CxHxW`, kernel, stride `s<both>`
//! or `s<h>,<w>`, padding `p<all>` or `p<top>,<left>,<bottom>,<right>`,
//! groups; dense layers and global poolings only their shapes) is the one
//! `scripts/cmsis-nn-layers.sh` matches CMSIS-NN's layers with. The log
//! line of a node is written after its `End` and before the next node's
//! `Start`, outside both nodes' spans. Under QEMU the cost is in
//! instructions, on a board in core clock cycles, on the host in
//! nanoseconds: the `cost` function and its unit say which.

#[cfg(all(model_graph, not(test_rows)))]
use crate::inference;
#[cfg(all(model_int8, model_graph, not(test_rows)))]
use crate::inference::{Deployed, INT8_MODEL};
use ember_nn_core::deploy::{GraphModel, NodeEvent, NodeHeader, NodeOp};

/// A clock's ticks to a cost, and the cost's unit.
pub struct Cost {
    /// Ticks to the cost.
    pub convert: fn(u64) -> u64,
    /// Its unit (`"instructions"`).
    pub unit: &'static str,
}

/// Times each node of one int8 inference of the first test image (the
/// quantized image at the start of `scratch`, [`inference::SCRATCH_I8`]
/// bytes, as `run_int8` uses it).
#[cfg(all(model_int8, model_graph, not(test_rows)))]
pub fn int8(scratch: &mut [i8], clock: &dyn Fn() -> u64, cost: &Cost) {
    let Ok(model) = GraphModel::parse(&INT8_MODEL.0) else {
        return;
    };
    let image = inference::first_image();
    // Quantizes the image into the start of `scratch` (and warms the run).
    if model.logits_i8(image, scratch).is_err() {
        return;
    }
    let n = image.len().min(inference::PIXELS);
    let (input, arena) = scratch.split_at_mut(inference::PIXELS);
    let mut start = 0;
    let r = model.infer_q8_profiled(&input[..n], arena, &mut |i, h, e| {
        timed(&mut start, "int8", i, h, e, clock, cost)
    });
    if let Err(e) = r {
        say!("int8 per node: inference failed: {}", e);
    }
}

/// Times each node of one f32 inference of the first test image (the
/// pixels as floats in `input`; `scratch` [`inference::SCRATCH`] floats).
#[cfg(all(model_f32, model_graph, not(test_rows)))]
pub fn f32(input: &mut [f32], scratch: &mut [f32], clock: &dyn Fn() -> u64, cost: &Cost) {
    let Ok(model) = GraphModel::parse(&inference::F32_MODEL.0) else {
        return;
    };
    for (x, &p) in input.iter_mut().zip(inference::first_image()) {
        *x = f32::from(p) / 255.0;
    }
    let mut start = 0;
    let r = model.infer_f32_profiled(input, scratch, &mut |i, h, e| {
        timed(&mut start, "f32", i, h, e, clock, cost)
    });
    if let Err(e) = r {
        say!("f32 per node: inference failed: {}", e);
    }
}

/// Times each node of one int8 inference of `input` (quantized) by
/// `model` in `scratch`, its lines named `name` (the MLPerf Tiny mode's
/// graph models).
#[cfg(all(mlperf_graph, target_os = "none"))]
pub fn graph_int8(
    name: &str,
    model: &GraphModel<'_>,
    input: &[i8],
    scratch: &mut [i8],
    clock: &dyn Fn() -> u64,
    cost: &Cost,
) {
    let mut start = 0;
    let r = model.infer_q8_profiled(input, scratch, &mut |i, h, e| {
        timed(&mut start, name, i, h, e, clock, cost)
    });
    if let Err(e) = r {
        say!("{} per node: inference failed: {}", name, e);
    }
}

/// The observer: notes the clock at a node's start, logs its line at its end.
fn timed(
    start: &mut u64,
    name: &str,
    i: usize,
    h: &NodeHeader,
    e: NodeEvent,
    clock: &dyn Fn() -> u64,
    cost: &Cost,
) {
    match e {
        NodeEvent::Start => *start = clock(),
        NodeEvent::End => {
            let c = (cost.convert)(clock().wrapping_sub(*start));
            line(name, i, h, c, cost.unit);
        }
    }
}

/// Logs a node's line.
fn line(name: &str, i: usize, h: &NodeHeader, cost: u64, unit: &str) {
    let op = match h.op {
        NodeOp::Input => "input",
        NodeOp::Dense => "dense",
        NodeOp::Conv => "conv",
        NodeOp::MaxPool => "maxpool",
        NodeOp::AvgPool => "avgpool",
        NodeOp::GlobalAvgPool => "gavgpool",
        NodeOp::Add => "add",
    };
    let [ic, ih, iw] = h.in_shape;
    let [oc, oh, ow] = h.out_shape;
    let macs = h.multiply_adds() as u64;
    // Per multiply-add in hundredths, in integers (no float division on a
    // Cortex-M0), as two digits after the point; `-` for a node without
    // multiply-adds (a pooling).
    let mut per_buf = [0u8; 32];
    let per = match cost.saturating_mul(100).checked_div(macs) {
        None => "-",
        Some(hundredths) => {
            let whole = decimal(&mut per_buf[..24], &[(hundredths / 100) as usize]).len();
            per_buf[whole] = b'.';
            per_buf[whole + 1] = b'0' + (hundredths / 10 % 10) as u8;
            per_buf[whole + 2] = b'0' + (hundredths % 10) as u8;
            core::str::from_utf8(&per_buf[..whole + 3]).unwrap_or("?")
        }
    };
    if !h.op.has_window() {
        say!(
            "{} node {} {} {}x{}x{} -> {}x{}x{}: {} {}, {} multiply-adds, {} per multiply-add",
            name,
            i,
            op,
            ic,
            ih,
            iw,
            oc,
            oh,
            ow,
            cost,
            unit,
            macs,
            per
        );
        return;
    }
    let g = h.geometry;
    // Stride and padding, short when all equal (the keys CMSIS-NN's
    // harness writes).
    let mut stride = [0u8; 16];
    let mut pad = [0u8; 32];
    let stride = if g.stride[0] == g.stride[1] {
        decimal(&mut stride, &[g.stride[0]])
    } else {
        decimal(&mut stride, &g.stride)
    };
    let [t, l, b, r] = g.pad;
    let pad = if t == l && t == b && t == r {
        decimal(&mut pad, &[t])
    } else {
        decimal(&mut pad, &[t, l, b, r])
    };
    say!(
        "{} node {} {} {}x{}x{} -> {}x{}x{} k{}x{} s{} p{} g{}: {} {}, {} multiply-adds, {} per multiply-add",
        name,
        i,
        op,
        ic,
        ih,
        iw,
        oc,
        oh,
        ow,
        g.kernel[0],
        g.kernel[1],
        stride,
        pad,
        g.groups,
        cost,
        unit,
        macs,
        per
    );
}

/// `values` in decimal, comma-separated, in `buf` (no allocation).
fn decimal<'b>(buf: &'b mut [u8], values: &[usize]) -> &'b str {
    let mut n = 0;
    for (k, &v) in values.iter().enumerate() {
        if k > 0 && n < buf.len() {
            buf[n] = b',';
            n += 1;
        }
        let mut digits = [0u8; 20];
        let mut d = 0;
        let mut v = v;
        loop {
            digits[d] = b'0' + (v % 10) as u8;
            d += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for &c in digits[..d].iter().rev() {
            if n < buf.len() {
                buf[n] = c;
                n += 1;
            }
        }
    }
    core::str::from_utf8(&buf[..n]).unwrap_or("?")
}
