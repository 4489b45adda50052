//! `GraphModel::infer_q8_profiled` and `infer_f32_profiled`: one `Start`
//! and one `End` per node, in order, around the same outputs as the
//! unprofiled inference.

extern crate std;
use super::{GraphModel, NodeEvent, NodeHeader, NodeOp};
use crate::deploy::{self, quantize_graph, Aligned, GraphCalibration};
use crate::nn::{Build, Conv2d, Flatten, Forward, Linear, MaxPool2d, ReLU};
use crate::prelude::*;
use std::{boxed::Box, vec, vec::Vec};

type Cnn = (
    Conv2d<1, 4, 3, 1, 1>,
    ReLU,
    MaxPool2d<2>,
    Flatten<64>,
    Linear<64, 3>,
);

/// The events a profiled run reports: (node, op, multiply-adds, event).
type Events = Vec<(usize, NodeOp, usize, NodeEvent)>;

fn record(events: &mut Events) -> impl FnMut(usize, &NodeHeader, NodeEvent) + '_ {
    |i, h, e| events.push((i, h.op, h.multiply_adds(), e))
}

#[test]
fn profiled_inference_reports_every_node_in_order_with_the_same_outputs() {
    let mut buf = vec![0.0f32; 1 << 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let cnn = Cnn::build(&mut mem, &mut Rng::new(3)).expect("builds");
    let mut file = Box::new(Aligned([0u8; 4096]));
    let mut scratch = [0.0f32; 512];
    let n = deploy::export_f32(
        &cnn,
        &mut mem,
        |p| cnn.forward(p.input((p.rows(), Const::<1>, Const::<8>, Const::<8>))),
        &mut file.0,
        &mut scratch,
    )
    .expect("exports");
    let graph = GraphModel::parse(&file.0[..n]).expect("valid");
    // Conv 1→4 3×3 on 8×8: 4·8·8 outputs of 9 taps; the dense layer 64·3.
    let expected: Events = [
        (1, NodeOp::Conv, 4 * 64 * 9),
        (2, NodeOp::MaxPool, 0),
        (3, NodeOp::Dense, 64 * 3),
    ]
    .iter()
    .flat_map(|&(i, op, m)| [(i, op, m, NodeEvent::Start), (i, op, m, NodeEvent::End)])
    .collect();

    let x: Vec<f32> = (0..64).map(|j| (j % 10) as f32 / 10.0).collect();
    let mut arena = vec![0.0f32; graph.scratch_len()];
    let plain = graph.infer_f32(&x, &mut arena).expect("runs").to_vec();
    let mut events = Events::new();
    let profiled = graph
        .infer_f32_profiled(&x, &mut arena, &mut record(&mut events))
        .expect("runs")
        .to_vec();
    assert_eq!(plain, profiled);
    assert_eq!(events, expected);
    assert!(graph
        .infer_q8_profiled(&[0; 64], &mut [0; 512], &mut |_, _, _| {})
        .is_err());

    let mut calib = GraphCalibration::new();
    calib.observe(&graph, &x, &mut arena).expect("runs");
    let mut q = Box::new(Aligned([0u8; 4096]));
    let qn = quantize_graph(&graph, &calib, &mut q.0).expect("quantizes");
    let int8 = GraphModel::parse(&q.0[..qn]).expect("valid");
    let mut qx = vec![0i8; 64];
    int8.quantize_input(&x, &mut qx).expect("64 inputs");
    let mut qarena = vec![0i8; int8.scratch_len()];
    let plain = int8.infer_q8(&qx, &mut qarena).expect("runs").to_vec();
    let mut events = Events::new();
    let profiled = int8
        .infer_q8_profiled(&qx, &mut qarena, &mut record(&mut events))
        .expect("runs")
        .to_vec();
    assert_eq!(plain, profiled);
    assert_eq!(events, expected);
    // Too little scratch: an error before any node runs.
    let mut events = Events::new();
    assert!(int8
        .infer_q8_profiled(&qx, &mut qarena[..1], &mut record(&mut events))
        .is_err());
    assert!(events.is_empty());
}
