//! Training throughput and GEMM speed of Ember, printed as one JSON object per
//! line so that `scripts/bench.py` can put them beside PyTorch's.
//!
//! `cargo run --release -p ember-nn-std --example bench_train -- [--threads N] [--seconds S] [--device cuda]`
//!
//! The CPU cases: three MLPs, and the `cnn` preset of `ember train --model
//! cnn` ([`ember_nn_std::cnn::FashionCnn`], Adam) at batch 64 and 256.
//!
//! With `--device cuda` it times the GPU cases (784-512-512-10, SGD, batch
//! 64, 256 and 1024) on [`ember_nn_cuda::CudaBackend`] instead, waiting for the
//! GPU at the end of each timing window; without a usable GPU it says why and
//! exits with status 2.

use ember_nn_core::backend::{Acc, Backend, Device, Gemm, Span};
use ember_nn_core::deploy::Activation;
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{Forward, Mlp, Optimizer, Rule};
use ember_nn_core::{Const, Graph, Memory, Rng};
use ember_nn_std::Parallel;
use std::time::Instant;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Samples per second of full training steps (zero_grad, forward, loss,
/// backward, optimizer step) on random data already in host memory (each
/// step uploads its batch, as a data loader's would be). `sync` waits for the
/// device (a no-op on the CPU), at the end of the warm-up and of the window.
fn train_throughput<D: Device>(
    be: &D,
    sync: &dyn Fn(),
    widths: &[usize],
    batch: usize,
    rule: Rule,
    seconds: f64,
) -> f64 {
    let mut rng = Rng::new(1);
    let mut probe = vec![0.0f32; Mlp::param_floats(widths) + 64];
    let need = {
        let mut m = Memory::new(&ember_nn_core::Cpu, &mut probe[..]);
        Mlp::new(&mut m, &mut Rng::new(0), widths, Activation::Relu)
            .map(|mlp| mlp.train_floats(batch, rule.state_planes()))
            .unwrap_or(0)
    };
    let mut storage = be.alloc(need).expect("device memory");
    let mut mem = Memory::new(be, storage.as_mut());
    let model = Mlp::new(&mut mem, &mut rng, widths, Activation::Relu).expect("memory");
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, 1e-3).expect("memory");
    let batches = 16;
    let xs: Vec<f32> = (0..batches * batch * widths[0])
        .map(|_| rng.uniform())
        .collect();
    let classes = *widths.last().unwrap_or(&1) as u32;
    let ys: Vec<usize> = (0..batches * batch)
        .map(|_| rng.below(classes) as usize)
        .collect();
    let mut step = |i: usize| {
        let b = i % batches;
        opt.zero_grad(&mut mem).expect("zero_grad");
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice(
                (batch, widths[0]),
                &xs[b * batch * widths[0]..(b + 1) * batch * widths[0]],
            );
            let loss = cross_entropy(
                model.forward(x),
                &ys[b * batch..(b + 1) * batch],
                Reduction::Mean,
            );
            loss.backward().expect("backward");
        }
        opt.step(&mut mem).expect("step");
    };
    for i in 0..10 {
        step(i);
    }
    sync();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < seconds {
        step(n);
        n += 1;
    }
    sync();
    (n * batch) as f64 / t.elapsed().as_secs_f64()
}

/// Samples per second of full training steps of the `cnn` preset (two
/// 3×3 convolutions, ReLU, 2×2 max pooling, a linear layer) on random
/// 28×28 images, as [`train_throughput`] times an MLP's.
fn cnn_throughput<D: Device>(be: &D, batch: usize, rule: Rule, seconds: f64) -> f64 {
    use ember_nn_core::nn::Build;
    use ember_nn_std::cnn::{self, FashionCnn};
    let mut rng = Rng::new(1);
    let need = cnn::train_floats(batch, &rule).expect("arena size");
    let mut storage = be.alloc(need).expect("device memory");
    let mut mem = Memory::new(be, storage.as_mut());
    let model = FashionCnn::build(&mut mem, &mut rng).expect("memory");
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, 1e-3).expect("memory");
    let batches = 16;
    let f = cnn::IN_FEATURES;
    let xs: Vec<f32> = (0..batches * batch * f).map(|_| rng.uniform()).collect();
    let ys: Vec<usize> = (0..batches * batch)
        .map(|_| rng.below(cnn::CLASSES as u32) as usize)
        .collect();
    let mut step = |i: usize| {
        let b = i % batches;
        opt.zero_grad(&mut mem).expect("zero_grad");
        {
            let g = Graph::new(&mut mem);
            let x = g.from_slice(
                (batch, Const::<1>, Const::<28>, Const::<28>),
                &xs[b * batch * f..(b + 1) * batch * f],
            );
            let loss = cross_entropy(
                model.forward(x),
                &ys[b * batch..(b + 1) * batch],
                Reduction::Mean,
            );
            loss.backward().expect("backward");
        }
        opt.step(&mut mem).expect("step");
    };
    for i in 0..5 {
        step(i);
    }
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < seconds {
        step(n);
        n += 1;
    }
    (n * batch) as f64 / t.elapsed().as_secs_f64()
}

/// GFLOP/s of one `n³` product, best of several timing windows.
fn gemm_gflops(be: &Parallel, n: usize, seconds: f64) -> f64 {
    let mut buf = vec![0.0f32; 3 * n * n];
    let mut rng = Rng::new(2);
    buf.iter_mut().for_each(|v| *v = rng.uniform());
    let g = Gemm {
        m: n,
        n,
        k: n,
        a: Span::new(0, n * n),
        trans_a: false,
        b: Span::new(n * n, n * n),
        trans_b: false,
        c: Span::new(2 * n * n, n * n),
        acc: Acc::Set,
    };
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let mut reps = 0;
        while t.elapsed().as_secs_f64() < seconds / 5.0 {
            be.gemm(&mut buf[..], 1, &g).expect("gemm");
            reps += 1;
        }
        let flops = 2.0 * (n * n * n) as f64 * reps as f64;
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    let threads = arg("--threads", 0.0) as usize;
    let seconds = arg("--seconds", 3.0);
    let args: Vec<String> = std::env::args().collect();
    if args
        .windows(2)
        .any(|w| w[0] == "--device" && w[1] == "cuda")
    {
        std::process::exit(cuda(seconds));
    }
    let be = Parallel::new(threads);
    let t = be.threads();
    for n in [256, 512, 1024] {
        let g = gemm_gflops(&be, n, seconds);
        println!("{{\"bench\": \"gemm\", \"n\": {n}, \"threads\": {t}, \"gflops\": {g:.2}}}");
    }
    let cases: [(&str, &[usize], usize, Rule); 3] = [
        ("784-128-10 adam b64", &[784, 128, 10], 64, Rule::adam()),
        (
            "784-512-512-10 sgd b64",
            &[784, 512, 512, 10],
            64,
            Rule::sgd(),
        ),
        (
            "784-512-512-10 sgd b256",
            &[784, 512, 512, 10],
            256,
            Rule::sgd(),
        ),
    ];
    for (name, widths, batch, rule) in cases {
        let sps = train_throughput(&be, &|| {}, widths, batch, rule, seconds);
        println!("{{\"bench\": \"train\", \"case\": \"{name}\", \"threads\": {t}, \"samples_per_sec\": {sps:.1}}}");
    }
    for batch in [64, 256] {
        let name = format!("cnn adam b{batch}");
        let sps = cnn_throughput(&be, batch, Rule::adam(), seconds);
        println!("{{\"bench\": \"train\", \"case\": \"{name}\", \"threads\": {t}, \"samples_per_sec\": {sps:.1}}}");
    }
}

/// The GPU cases; the process' exit status.
#[cfg(feature = "cuda")]
fn cuda(seconds: f64) -> i32 {
    let gpu = match ember_nn_cuda::CudaBackend::new(0).and_then(|g| g.warm_up().map(|()| g)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no usable GPU: {e}");
            return 2;
        }
    };
    let sync = || gpu.synchronize().expect("the GPU failed");
    let device = gpu.name().to_owned();
    for batch in [64, 256, 1024] {
        let name = format!("784-512-512-10 sgd b{batch}");
        let sps = train_throughput(
            &gpu,
            &sync,
            &[784, 512, 512, 10],
            batch,
            Rule::sgd(),
            seconds,
        );
        println!("{{\"bench\": \"train\", \"case\": \"{name}\", \"device\": \"{device}\", \"samples_per_sec\": {sps:.1}}}");
    }
    0
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: f64) -> i32 {
    eprintln!("this build has no CUDA support (feature `cuda`)");
    2
}
