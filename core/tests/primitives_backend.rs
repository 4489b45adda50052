//! A backend that implements only the fourteen required methods of
//! [`Backend`] (memory and the primitives) runs everything: the whole
//! conformance suite passes through the composed default kernels
//! (`backend::composed`), with a large scratch region and with a small one
//! (many chunks), and a model trains on it as on the reference `Cpu`.
//!
//! This is also the template for a new backend: implement these, then
//! override the fused kernels one at a time, rerunning the suite.

use ember_nn_core::backend::conformance::{self, BUF_LEN};
use ember_nn_core::backend::{Acc, AxisDims, Backend, Blocks, Gemm, Map, Reduce, Span, Zip};
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{Build, Forward, Linear, Optimizer, ReLU, Rule};
use ember_nn_core::prelude::*;
use ember_nn_core::Error;

/// Only the primitives, each forwarded to the portable kernels; the last
/// `scratch` floats of every buffer are its scratch region.
struct Primitives {
    scratch: usize,
}

impl Backend for Primitives {
    type Buffer = [f32];

    fn buffer_len(&self, buf: &[f32]) -> usize {
        buf.len().saturating_sub(self.scratch)
    }
    fn scratch(&self, buf: &[f32]) -> Span {
        let start = self.buffer_len(buf);
        Span::new(start, buf.len() - start)
    }
    fn upload(&self, buf: &mut [f32], dst: Span, src: &[f32]) -> ember_nn_core::Result<()> {
        Cpu.upload(buf, dst, src)
    }
    fn download(&self, buf: &[f32], src: Span, dst: &mut [f32]) -> ember_nn_core::Result<()> {
        Cpu.download(buf, src, dst)
    }
    fn fill(&self, buf: &mut [f32], dst: Span, value: f32) -> ember_nn_core::Result<()> {
        Cpu.fill(buf, dst, value)
    }
    fn copy(&self, buf: &mut [f32], blocks: &Blocks) -> ember_nn_core::Result<()> {
        Cpu.copy(buf, blocks)
    }
    fn map(&self, buf: &mut [f32], f: Map, x: Span, y: Span) -> ember_nn_core::Result<()> {
        Cpu.map(buf, f, x, y)
    }
    fn map_backward(
        &self,
        buf: &mut [f32],
        f: Map,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> ember_nn_core::Result<()> {
        Cpu.map_backward(buf, f, x, y, dy, dx)
    }
    fn zip(&self, buf: &mut [f32], f: Zip, a: Span, b: Span, y: Span) -> ember_nn_core::Result<()> {
        Cpu.zip(buf, f, a, b, y)
    }
    fn zip_backward(
        &self,
        buf: &mut [f32],
        f: Zip,
        rhs: bool,
        a: Span,
        b: Span,
        dy: Span,
        d: Span,
    ) -> ember_nn_core::Result<()> {
        Cpu.zip_backward(buf, f, rhs, a, b, dy, d)
    }
    fn gemm(&self, buf: &mut [f32], batch: usize, g: &Gemm) -> ember_nn_core::Result<()> {
        Cpu.gemm(buf, batch, g)
    }
    fn reduce(
        &self,
        buf: &mut [f32],
        op: Reduce,
        x: Span,
        y: Span,
        dims: AxisDims,
        acc: Acc,
    ) -> ember_nn_core::Result<()> {
        Cpu.reduce(buf, op, x, y, dims, acc)
    }
    fn expand(
        &self,
        buf: &mut [f32],
        x: Span,
        y: Span,
        dims: AxisDims,
        acc: Acc,
    ) -> ember_nn_core::Result<()> {
        Cpu.expand(buf, x, y, dims, acc)
    }
    fn max_backward(
        &self,
        buf: &mut [f32],
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
        dims: AxisDims,
    ) -> ember_nn_core::Result<()> {
        Cpu.max_backward(buf, x, y, dy, dx, dims)
    }
    #[allow(clippy::too_many_arguments)]
    fn transpose(
        &self,
        buf: &mut [f32],
        x: Span,
        y: Span,
        batch: usize,
        rows: usize,
        cols: usize,
        acc: Acc,
    ) -> ember_nn_core::Result<()> {
        Cpu.transpose(buf, x, y, batch, rows, cols, acc)
    }
}

/// The whole suite with `scratch` floats of scratch.
fn conforms(scratch: usize, seed: u64) {
    let be = Primitives { scratch };
    let mut buf = vec![0.0f32; BUF_LEN + scratch];
    let mut host = vec![0.0f32; BUF_LEN];
    let report = conformance::check(&be, &mut buf[..], &mut host, seed, 1e-4)
        .unwrap_or_else(|m| panic!("{m}"));
    assert!(report.cases > 500, "{report:?}");
    println!("scratch {scratch}: {report:?}");
}

#[test]
fn primitives_only_passes_the_whole_conformance_suite() {
    // Room for the largest case in one chunk: four planes of 70,001 floats.
    conforms(4 * conformance::LARGE + 1024, 7);
}

#[test]
fn a_small_scratch_region_runs_the_same_kernels_in_chunks() {
    // 5,100 floats: updates in chunks of 1,275 elements, bias + activation
    // a few rows at a time, cross-entropy over 1,000 classes one row at a
    // time, softmax one or more outer slices at a time.
    // A softmax whose one slice (3·len·inner + 2·inner floats) does not fit
    // is refused with the size it needs, and nothing else is.
    const SCRATCH: usize = 5_100;
    let be = Primitives { scratch: SCRATCH };
    let mut buf = vec![0.0f32; BUF_LEN + SCRATCH];
    let mut host = vec![0.0f32; BUF_LEN];
    let (mut passed, mut refused) = (0, 0);
    for (i, call) in conformance::cases().enumerate() {
        match conformance::check_case(&be, &mut buf[..], &mut host, i, call, 9, 1e-4) {
            Ok(_) => passed += 1,
            Err(m) => {
                let (conformance::Call::Softmax { dims, .. }
                | conformance::Call::SoftmaxBackward { dims, .. }) = call
                else {
                    panic!("{m}");
                };
                let slice = 3 * dims.len * dims.inner + 2 * dims.inner;
                let expected = conformance::Failure::Backend(Error::OutOfMemory {
                    needed: slice,
                    available: SCRATCH,
                });
                assert!(slice > SCRATCH && m.failure == expected, "{m}");
                refused += 1;
            }
        }
    }
    assert!(
        passed > 500 && refused <= 12,
        "{passed} passed, {refused} refused"
    );
}

#[test]
fn without_scratch_a_fused_kernel_is_an_error_and_writes_nothing() {
    let be = Primitives { scratch: 0 };
    let mut buf = [1.0f32; 16];
    let r = be.softmax(
        &mut buf,
        Span::new(0, 4),
        Span::new(4, 4),
        AxisDims {
            outer: 1,
            len: 4,
            inner: 1,
        },
        false,
    );
    assert!(matches!(r, Err(Error::OutOfMemory { .. })), "{r:?}");
    assert_eq!(buf, [1.0; 16]);
    // An operand inside the scratch region is refused too.
    let be = Primitives { scratch: 8 };
    let r = be.bias_act(&mut buf, Map::Relu, Span::new(0, 2), Span::new(8, 4));
    assert!(r.is_err(), "{r:?}");
    assert_eq!(buf, [1.0; 16]);
}

type Net = (Linear<4, 16>, ReLU, Linear<16, 3>);

/// Trains a small classifier (fused linear + ReLU, cross-entropy, Adam)
/// for a few steps on `be` and returns the losses.
fn train<B: Backend<Buffer = [f32]>>(be: &B, buf: &mut [f32]) -> Vec<f32> {
    let mut mem = Memory::new(be, buf);
    let mut rng = Rng::new(3);
    let model = Net::build(&mut mem, &mut rng).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.05).unwrap();
    let xs: Vec<f32> = (0..24).map(|i| (i as f32).sin()).collect();
    let ys = [0usize, 1, 2, 0, 1, 2];
    let mut losses = vec![];
    for _ in 0..20 {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice((6usize, Const::<4>), &xs);
            let loss = cross_entropy(model.forward(x), &ys, Reduction::Mean);
            losses.push(loss.item().unwrap());
            loss.backward().unwrap();
        }
        opt.step(&mut mem).unwrap();
    }
    losses
}

#[test]
fn a_model_trains_on_primitives_alone_as_on_the_cpu() {
    let mut a = vec![0.0f32; 1 << 14];
    let mut b = vec![0.0f32; (1 << 14) + 256];
    let on_cpu = train(&Cpu, &mut a);
    let on_primitives = train(&Primitives { scratch: 256 }, &mut b);
    assert!(on_cpu[19] < 0.5 * on_cpu[0], "{on_cpu:?}");
    for (c, p) in on_cpu.iter().zip(&on_primitives) {
        assert!(
            (c - p).abs() <= 1e-4 * c.abs().max(1.0),
            "{on_cpu:?}\n{on_primitives:?}"
        );
    }
}
