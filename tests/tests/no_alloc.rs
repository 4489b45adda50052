//! A training step allocates nothing on the heap.
//!
//! A counting global allocator wraps the system one. A two-layer MLP
//! (16 → 32 → 4, batch 8) lives in a `Memory` over a stack array; building the
//! graph, the forward pass, the loss, backward and an SGD step on every
//! parameter must not change the allocation count, for three steps in a row,
//! and the loss must go down.
//!
//! The count is taken only on the thread that runs the step (a flag in a
//! `const`-initialised thread-local, which itself never allocates), so that
//! the test harness's other threads cannot disturb it; the counter is read
//! right before and right after the step, and nothing inside prints.

use ember_nn_core::ops::optim::Update;
use ember_nn_core::prelude::*;
use ember_nn_core::{ParamRef, Span};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

/// Allocation and reallocation calls made while `WATCHED` was set.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if WATCHED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only an atomic and a
// thread-local `Cell` with no destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the number of allocations it made.
fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    WATCHED.with(|w| w.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    let r = f();
    let after = ALLOCS.load(Ordering::SeqCst);
    WATCHED.with(|w| w.set(false));
    (r, after - before)
}

const BATCH: usize = 8;
const IN: usize = 16;
const HIDDEN: usize = 32;
const OUT: usize = 4;

struct Mlp {
    w1: Param<Rank2<HIDDEN, IN>>,
    b1: Param<Rank1<HIDDEN>>,
    w2: Param<Rank2<OUT, HIDDEN>>,
    b2: Param<Rank1<OUT>>,
}

impl Mlp {
    fn params(&self) -> [ParamRef; 4] {
        [
            self.w1.into(),
            self.b1.into(),
            self.w2.into(),
            self.b2.into(),
        ]
    }
}

/// One training step: zero the gradients, forward, loss, backward, SGD.
/// Returns the loss before the update.
fn train_step(
    mem: &mut Memory<'_, Cpu>,
    mlp: &Mlp,
    x: &[[f32; IN]; BATCH],
    onehot: &[[f32; OUT]; BATCH],
    first: bool,
) -> Result<f32> {
    for p in mlp.params() {
        mem.fill(p.grad, 0.0)?;
    }
    let loss = {
        let g = Graph::new(mem);
        let x = g.tensor(*x);
        let (w1, b1) = (g.param(&mlp.w1), g.param(&mlp.b1));
        let (w2, b2) = (g.param(&mlp.w2), g.param(&mlp.b2));
        let h = (x.matmul_t(w1) + b1).relu();
        let logits = h.matmul_t(w2) + b2;
        let logp = logits.log_softmax::<1>();
        let loss = -(logp * g.tensor(*onehot)).sum() / BATCH as f32;
        loss.backward()?;
        loss.item()?
    };
    let rule = Update::Sgd {
        lr: 0.5,
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
        weight_decay: 0.0,
        first,
    };
    for p in mlp.params() {
        mem.with_buffer(|be, buf| be.update(buf, &rule, p.value, p.grad, Span::default()))?;
    }
    Ok(loss)
}

#[test]
fn training_steps_do_not_allocate() {
    // The counter works: an allocation inside the region is seen.
    let (b, n) = count(|| Box::new([1u8; 64]));
    assert!(n >= 1, "the counting allocator is not active");
    drop(b);

    let mut rng = Rng::new(1234);
    let mut x = [[0.0f32; IN]; BATCH];
    let mut onehot = [[0.0f32; OUT]; BATCH];
    for (row, t) in x.iter_mut().zip(onehot.iter_mut()) {
        row.iter_mut().for_each(|v| *v = rng.normal());
        // The class is the largest of the first four features.
        let c = (0..OUT).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
        t[c] = 1.0;
    }

    let mut buf = [0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let s1 = 1.0 / (IN as f32).sqrt();
    let s2 = 1.0 / (HIDDEN as f32).sqrt();
    let mlp = Mlp {
        w1: mem.param_from_fn(|_| rng.uniform_in(-s1, s1)).unwrap(),
        b1: mem.param_from_fn(|_| rng.uniform_in(-s1, s1)).unwrap(),
        w2: mem.param_from_fn(|_| rng.uniform_in(-s2, s2)).unwrap(),
        b2: mem.param_from_fn(|_| rng.uniform_in(-s2, s2)).unwrap(),
    };

    let mut losses = [0.0f32; 4];
    for (step, loss) in losses.iter_mut().enumerate() {
        let (r, allocs) = count(|| train_step(&mut mem, &mlp, &x, &onehot, step == 0));
        *loss = r.expect("training step");
        assert_eq!(allocs, 0, "step {step} allocated {allocs} times");
    }
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "the loss does not decrease: {losses:?}"
    );
    // The parameters moved and stayed finite.
    let w2 = mem.value(&mlp.w2).unwrap();
    assert!(w2.as_flattened().iter().all(|v| v.is_finite()));
}
