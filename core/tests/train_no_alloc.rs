//! Training with no allocator: fixed seeds and step counts, every step made
//! of core operations only, and a counting global allocator showing that the
//! training steps allocate nothing on the heap.

use core::cell::Cell;
use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::sched::{LrScheduler, StepLR};
use ember_nn_core::nn::{self, Build, Forward, Linear, Module, Optimizer, Rule, Tanh};
use ember_nn_core::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};

/// Counts heap allocations made by the current thread while counting is on.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the number of heap allocations it made.
fn count_allocs<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    ON.with(|o| o.set(true));
    let r = f();
    ON.with(|o| o.set(false));
    (r, COUNT.with(Cell::get))
}

type XorNet = (Linear<2, 8>, Tanh, Linear<8, 2>);
const XOR_FLOATS: usize =
    nn::train_floats::<XorNet>(4, nn::loss::Loss::CrossEntropy, nn::Rule::adam());

#[test]
fn xor_reaches_100_percent_without_allocating() {
    let mut buf = [0.0f32; XOR_FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(7);
    let model = XorNet::build(&mut mem, &mut rng).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.05).unwrap();
    let xs = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let ys = [0usize, 1, 1, 0];

    let (losses, allocs) = count_allocs(|| {
        let mut losses = [0.0f32; 300];
        for l in losses.iter_mut() {
            opt.zero_grad(&mut mem).unwrap();
            {
                let g = Graph::new(&mut mem);
                let x = g.from_slice((4usize, Const::<2>), &xs);
                let loss = cross_entropy(model.forward(x), &ys, Reduction::Mean);
                *l = loss.item().unwrap();
                loss.backward().unwrap();
            }
            opt.step(&mut mem).unwrap();
        }
        losses
    });
    assert_eq!(allocs, 0, "training steps allocated on the heap");
    assert!(
        losses[299] < losses[0] / 10.0,
        "loss {} -> {}",
        losses[0],
        losses[299]
    );

    let g = Graph::new(&mut mem);
    let x = g.from_slice((4usize, Const::<2>), &xs);
    let pred = model.forward(x).argmax_axis::<1>();
    let mut p = [0.0f32; 4];
    pred.read(&mut p).unwrap();
    assert_eq!(p, [0.0, 1.0, 1.0, 0.0]);
}

/// Two interleaved half circles with noise (scikit-learn's `make_moons`).
fn two_moons(n: usize, noise: f32, rng: &mut Rng, xs: &mut [f32], ys: &mut [usize]) {
    for i in 0..n {
        let class = i % 2;
        let t = std::f32::consts::PI * rng.uniform();
        let (x, y) = if class == 0 {
            (t.cos(), t.sin())
        } else {
            (1.0 - t.cos(), 0.5 - t.sin())
        };
        xs[2 * i] = x + noise * rng.normal();
        xs[2 * i + 1] = y + noise * rng.normal();
        ys[i] = class;
    }
}

type MoonNet = (Linear<2, 16>, Tanh, Linear<16, 16>, Tanh, Linear<16, 2>);
const MOON_BATCH: usize = 32;
const MOON_FLOATS: usize =
    nn::train_floats::<MoonNet>(MOON_BATCH, nn::loss::Loss::CrossEntropy, nn::Rule::adam());

#[test]
fn two_moons_reaches_99_percent_with_minibatches_and_a_scheduler() {
    const N: usize = 256;
    let mut rng = Rng::new(42);
    let (mut xs, mut ys) = ([0.0f32; 2 * N], [0usize; N]);
    two_moons(N, 0.1, &mut rng, &mut xs, &mut ys);

    let mut buf = vec![0.0f32; MOON_FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut model = MoonNet::build(&mut mem, &mut rng).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.02).unwrap();
    let mut sched = StepLR::new(60, 0.5);
    let mut order = [0usize; N];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    let (mut bx, mut by) = ([0.0f32; 2 * MOON_BATCH], [0usize; MOON_BATCH]);

    model.train();
    let ((), allocs) = count_allocs(|| {
        for _epoch in 0..150 {
            rng.shuffle(&mut order);
            for batch in order.chunks(MOON_BATCH) {
                for (j, &i) in batch.iter().enumerate() {
                    bx[2 * j..2 * j + 2].copy_from_slice(&xs[2 * i..2 * i + 2]);
                    by[j] = ys[i];
                }
                let n = batch.len();
                opt.zero_grad(&mut mem).unwrap();
                {
                    let g = Graph::new(&mut mem);
                    let x = g.from_slice((n, Const::<2>), &bx[..2 * n]);
                    let loss = cross_entropy(model.forward(x), &by[..n], Reduction::Mean);
                    loss.backward().unwrap();
                }
                opt.step(&mut mem).unwrap();
            }
            sched.step();
            opt.set_lr_with(|base| sched.lr(base));
        }
    });
    assert_eq!(allocs, 0, "training allocated on the heap");

    model.eval();
    let mut p = [0.0f32; N];
    for (c, out) in p.chunks_mut(MOON_BATCH).enumerate() {
        let g = Graph::new(&mut mem);
        let n = out.len();
        let x = g.from_slice((n, Const::<2>), &xs[2 * c * MOON_BATCH..][..2 * n]);
        let pred = g.no_grad(|| model.forward(x).argmax_axis::<1>());
        pred.read(out).unwrap();
    }
    let correct = p
        .iter()
        .zip(ys.iter())
        .filter(|(p, y)| **p as usize == **y)
        .count();
    let acc = correct as f32 / N as f32;
    assert!(acc >= 0.99, "two-moons training accuracy {acc}");
}
