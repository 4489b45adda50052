//! Where a training step's time goes, kernel by kernel: a backend wrapper
//! that times every call it forwards to `Parallel` (a profiling aid).
//!
//! `cargo run --release -p ember-nn-std --example profile_step -- 784-512-512-10 64 sgd`
//!
//! `... -- cnn 64 adam` profiles the `cnn` preset of `ember train --model cnn`.

use ember_nn_core::backend::{
    Acc, AxisDims, Backend, Blocks, Device, Gemm, Reduce, Span, WindowCall, WindowKernel,
};
use ember_nn_core::deploy::Activation;
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{Forward, Mlp, Optimizer, Rule};
use ember_nn_core::ops::{map::Map, optim::Update, zip::Zip};
use ember_nn_core::{Graph, Memory, Result, Rng};
use ember_nn_std::Parallel;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

struct Timed {
    inner: Parallel,
    times: RefCell<BTreeMap<&'static str, (u32, f64)>>,
}

impl Timed {
    fn time<R>(&self, name: &'static str, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        let mut m = self.times.borrow_mut();
        let e = m.entry(name).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += t.elapsed().as_secs_f64();
        r
    }
}

impl Backend for Timed {
    type Buffer = [f32];
    fn buffer_len(&self, buf: &[f32]) -> usize {
        buf.len()
    }
    fn upload(&self, buf: &mut [f32], dst: Span, src: &[f32]) -> Result<()> {
        self.time("upload", || self.inner.upload(buf, dst, src))
    }
    fn download(&self, buf: &[f32], src: Span, dst: &mut [f32]) -> Result<()> {
        self.time("download", || self.inner.download(buf, src, dst))
    }
    fn fill(&self, buf: &mut [f32], dst: Span, v: f32) -> Result<()> {
        self.time("fill", || self.inner.fill(buf, dst, v))
    }
    fn copy(&self, buf: &mut [f32], b: &Blocks) -> Result<()> {
        self.time("copy", || self.inner.copy(buf, b))
    }
    fn map(&self, buf: &mut [f32], f: Map, x: Span, y: Span) -> Result<()> {
        self.time("map", || self.inner.map(buf, f, x, y))
    }
    fn map_backward(
        &self,
        buf: &mut [f32],
        f: Map,
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
    ) -> Result<()> {
        self.time("map_backward", || {
            self.inner.map_backward(buf, f, x, y, dy, dx)
        })
    }
    fn bias_act(&self, buf: &mut [f32], f: Map, bias: Span, y: Span) -> Result<()> {
        self.time("bias_act", || self.inner.bias_act(buf, f, bias, y))
    }
    fn act_backward(&self, buf: &mut [f32], f: Map, y: Span, dy: Span) -> Result<()> {
        self.time("act_backward", || self.inner.act_backward(buf, f, y, dy))
    }
    fn zip(&self, buf: &mut [f32], f: Zip, a: Span, b: Span, y: Span) -> Result<()> {
        self.time("zip", || self.inner.zip(buf, f, a, b, y))
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
    ) -> Result<()> {
        self.time("zip_backward", || {
            self.inner.zip_backward(buf, f, rhs, a, b, dy, d)
        })
    }
    fn gemm(&self, buf: &mut [f32], batch: usize, g: &Gemm) -> Result<()> {
        let name = match (g.trans_a, g.trans_b, g.acc) {
            (false, true, _) => "gemm A·Bᵀ",
            (true, false, _) => "gemm Aᵀ·B",
            (false, false, Acc::Add) => "gemm A·B (+=)",
            _ => "gemm other",
        };
        self.time(name, || self.inner.gemm(buf, batch, g))
    }
    fn reduce(
        &self,
        buf: &mut [f32],
        op: Reduce,
        x: Span,
        y: Span,
        d: AxisDims,
        acc: Acc,
    ) -> Result<()> {
        self.time("reduce", || self.inner.reduce(buf, op, x, y, d, acc))
    }
    fn expand(&self, buf: &mut [f32], x: Span, y: Span, d: AxisDims, acc: Acc) -> Result<()> {
        self.time("expand", || self.inner.expand(buf, x, y, d, acc))
    }
    fn max_backward(
        &self,
        buf: &mut [f32],
        x: Span,
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
    ) -> Result<()> {
        self.time("max_backward", || {
            self.inner.max_backward(buf, x, y, dy, dx, d)
        })
    }
    fn softmax(&self, buf: &mut [f32], x: Span, y: Span, d: AxisDims, log: bool) -> Result<()> {
        self.time("softmax", || self.inner.softmax(buf, x, y, d, log))
    }
    fn softmax_backward(
        &self,
        buf: &mut [f32],
        y: Span,
        dy: Span,
        dx: Span,
        d: AxisDims,
        log: bool,
    ) -> Result<()> {
        self.time("softmax_backward", || {
            self.inner.softmax_backward(buf, y, dy, dx, d, log)
        })
    }
    fn cross_entropy(
        &self,
        buf: &mut [f32],
        x: Span,
        t: Span,
        loss: Span,
        classes: usize,
    ) -> Result<()> {
        self.time("cross_entropy", || {
            self.inner.cross_entropy(buf, x, t, loss, classes)
        })
    }
    fn cross_entropy_backward(
        &self,
        buf: &mut [f32],
        x: Span,
        t: Span,
        dloss: Span,
        dx: Span,
        classes: usize,
    ) -> Result<()> {
        self.time("cross_entropy_bwd", || {
            self.inner
                .cross_entropy_backward(buf, x, t, dloss, dx, classes)
        })
    }
    fn transpose(
        &self,
        buf: &mut [f32],
        x: Span,
        y: Span,
        b: usize,
        r: usize,
        c: usize,
        acc: Acc,
    ) -> Result<()> {
        self.time("transpose", || {
            self.inner.transpose(buf, x, y, b, r, c, acc)
        })
    }
    fn update(&self, buf: &mut [f32], rule: &Update, p: Span, g: Span, s: Span) -> Result<()> {
        self.time("update", || self.inner.update(buf, rule, p, g, s))
    }
    fn window(&self, buf: &mut [f32], call: &WindowCall) -> Result<()> {
        let name = match call.kernel {
            WindowKernel::Unfold => "window unfold",
            WindowKernel::Fold => "window fold",
            WindowKernel::MaxPool => "window maxpool",
            WindowKernel::MaxPoolBackward => "window maxpool bwd",
        };
        self.time(name, || self.inner.window(buf, call))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("cnn") {
        return cnn(&args);
    }
    let widths: Vec<usize> = args
        .get(1)
        .map_or("784-512-512-10", |s| s)
        .split('-')
        .filter_map(|w| w.parse().ok())
        .collect();
    let batch: usize = args.get(2).and_then(|b| b.parse().ok()).unwrap_or(64);
    let rule = if args.get(3).map(String::as_str) == Some("adam") {
        Rule::adam()
    } else {
        Rule::sgd()
    };
    let be = Timed {
        inner: Parallel::new(
            std::env::var("THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        ),
        times: RefCell::new(BTreeMap::new()),
    };
    let mut rng = Rng::new(0);
    let mut storage = be
        .inner
        .alloc(Mlp::param_floats(&widths) * 3 + batch * 20_000)
        .unwrap();
    let mut mem = Memory::new(&be, &mut storage[..]);
    let model = Mlp::new(&mut mem, &mut rng, &widths, Activation::Relu).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, 1e-3).unwrap();
    let xs: Vec<f32> = (0..batch * widths[0]).map(|_| rng.uniform()).collect();
    let ys: Vec<usize> = (0..batch).map(|i| i % widths[widths.len() - 1]).collect();
    let steps = 200;
    let t = Instant::now();
    for _ in 0..steps {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice((batch, widths[0]), &xs);
            cross_entropy(model.forward(x), &ys, Reduction::Mean)
                .backward()
                .unwrap();
        }
        opt.step(&mut mem).unwrap();
    }
    let total = t.elapsed().as_secs_f64();
    println!(
        "{steps} steps of {widths:?} at batch {batch}: {:.3} ms/step, {:.0} samples/s",
        total / steps as f64 * 1e3,
        (steps * batch) as f64 / total
    );
    report(&be, steps, total);
}

/// The `cnn` preset's steps, timed kernel by kernel.
fn cnn(args: &[String]) {
    use ember_nn_core::nn::Build;
    use ember_nn_std::cnn::{self, FashionCnn};
    let batch: usize = args.get(2).and_then(|b| b.parse().ok()).unwrap_or(64);
    let rule = if args.get(3).map(String::as_str) == Some("sgd") {
        Rule::sgd()
    } else {
        Rule::adam()
    };
    let be = Timed {
        inner: Parallel::new(
            std::env::var("THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        ),
        times: RefCell::new(BTreeMap::new()),
    };
    let mut rng = Rng::new(0);
    let mut storage = be
        .inner
        .alloc(cnn::train_floats(batch, &rule).unwrap())
        .unwrap();
    let mut mem = Memory::new(&be, &mut storage[..]);
    let model = FashionCnn::build(&mut mem, &mut rng).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, 1e-3).unwrap();
    let xs: Vec<f32> = (0..batch * cnn::IN_FEATURES)
        .map(|_| rng.uniform())
        .collect();
    let ys: Vec<usize> = (0..batch).map(|i| i % cnn::CLASSES).collect();
    let steps = 50;
    let t = Instant::now();
    for _ in 0..steps {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice(
                (
                    batch,
                    ember_nn_core::Const::<1>,
                    ember_nn_core::Const::<28>,
                    ember_nn_core::Const::<28>,
                ),
                &xs,
            );
            cross_entropy(model.forward(x), &ys, Reduction::Mean)
                .backward()
                .unwrap();
        }
        opt.step(&mut mem).unwrap();
    }
    let total = t.elapsed().as_secs_f64();
    println!(
        "{steps} steps of the cnn preset at batch {batch}: {:.3} ms/step, {:.0} samples/s",
        total / steps as f64 * 1e3,
        (steps * batch) as f64 / total
    );
    report(&be, steps, total);
}

/// Each kernel's share of `total` seconds over `steps` steps.
fn report(be: &Timed, steps: usize, total: f64) {
    let times = be.times.borrow();
    let kernels: f64 = times.values().map(|v| v.1).sum();
    for (name, (n, s)) in times.iter() {
        println!(
            "  {name:<16} {:>6} calls {:>8.3} ms/step {:>5.1}%",
            n,
            s / steps as f64 * 1e3,
            100.0 * s / total
        );
    }
    println!(
        "  (outside kernels) {:>20.3} ms/step {:>5.1}%",
        (total - kernels) / steps as f64 * 1e3,
        100.0 * (total - kernels) / total
    );
}
