//! The autograd semantics, activations and loss values PyTorch gives (float32),
//! reproduced with ember's operations.
//!
//! **Tolerances.** Values are compared to `1e-5` relative. Numbers printed
//! with 6 decimals (the activation table) can be off by half a unit in the
//! last place, so those comparisons add an absolute `5e-7`; numbers printed
//! with 7 significant digits add `5e-8`. Exact small integers are compared
//! exactly.

// The reference numbers are written as PyTorch printed them, even where an
// `f32` cannot hold every digit.
#![allow(clippy::excessive_precision)]

use ember_nn_core::graph::Graph;
use ember_nn_core::prelude::*;
use ember_nn_core::{Error, Tape};

type T<'t, S> = Tensor<'t, S, Cpu>;

/// Asserts `|a − e| ≤ rel·|e| + abs` elementwise.
#[track_caller]
fn close_tol(what: &str, actual: &[f32], expected: &[f32], rel: f32, abs: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= rel * e.abs() + abs,
            "{what}[{i}]: got {a}, expected {e} (all: {actual:?})"
        );
    }
}

/// `1e-5` relative, plus half a unit in the 7th significant digit.
#[track_caller]
fn close(what: &str, actual: &[f32], expected: &[f32]) {
    close_tol(what, actual, expected, 1e-5, 5e-8);
}

fn buffer() -> Vec<f32> {
    vec![0.0; 4096]
}

// ======================================================= autograd semantics

/// Q = 3a³ − b²: values, vector-Jacobian products, accumulation without zeroing.
#[test]
fn q_equals_3a3_minus_b2_and_gradients_accumulate() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.tensor([2.0f32, 3.0]).requires_grad();
    let b = g.tensor([6.0f32, 4.0]).requires_grad();
    let q = a.pow(3.0) * 3.0 - b.pow(2.0);
    assert_eq!(q.to_array().unwrap(), [-12.0, 65.0]);
    assert_eq!(q.grad_fn(), Some("SubBackward"));
    q.backward_with(&[1.0, 1.0]).unwrap();
    assert_eq!(a.grad().unwrap(), Some([36.0, 81.0]));
    assert_eq!(b.grad().unwrap(), Some([-12.0, -8.0]));

    // Rebuild Q without zeroing; the external gradient [2, 2] doubles this
    // pass's contribution, which adds to the previous one.
    let q = a.pow(3.0) * 3.0 - b.pow(2.0);
    q.backward_with(&[2.0, 2.0]).unwrap();
    assert_eq!(a.grad().unwrap(), Some([108.0, 243.0]));
    assert_eq!(b.grad().unwrap(), Some([-36.0, -24.0]));
}

/// `out = (eye(4,5) + 1)².t()`, walked three times with `retain_graph`:
/// 4/2, then 8/4 (accumulated), then 4/2 again after zeroing.
#[test]
fn retain_graph_repeated_backward_and_zero_grad() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let inp = g.eye::<4, 5>().requires_grad();
    let out = (inp + 1.0).pow(2.0).t();
    assert_eq!(out.grad_fn(), Some("TransposeBackward"));
    let ones = [1.0f32; 20];
    let expect = |diag: f32, off: f32| {
        let mut e = [[off; 5]; 4];
        for (i, row) in e.iter_mut().enumerate() {
            row[i] = diag;
        }
        Some(e)
    };

    out.backward_with_retain(&ones).unwrap();
    assert_eq!(inp.grad().unwrap(), expect(4.0, 2.0));
    out.backward_with_retain(&ones).unwrap();
    assert_eq!(inp.grad().unwrap(), expect(8.0, 4.0));
    inp.zero_grad().unwrap();
    assert_eq!(inp.grad().unwrap(), expect(0.0, 0.0));
    out.backward_with_retain(&ones).unwrap();
    assert_eq!(inp.grad().unwrap(), expect(4.0, 2.0));

    // A plain backward frees the graph: a further walk is refused and
    // leaves the gradient as it was.
    out.backward_with(&ones).unwrap();
    assert_eq!(inp.grad().unwrap(), expect(8.0, 4.0));
    assert_eq!(out.backward_with(&ones), Err(Error::GraphFreed));
    assert_eq!(out.backward_with_retain(&ones), Err(Error::GraphFreed));
    assert_eq!(inp.grad().unwrap(), expect(8.0, 4.0));
}

/// The scalar form: `backward_retain` twice, then `backward`, then `GraphFreed`.
#[test]
fn scalar_backward_retain_then_graph_freed() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([1.0f32, 2.0, 3.0]).requires_grad();
    let y = (x * x).sum();
    y.backward_retain().unwrap();
    y.backward_retain().unwrap();
    assert_eq!(x.grad().unwrap(), Some([4.0, 8.0, 12.0]));
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([6.0, 12.0, 18.0]));
    assert_eq!(y.backward(), Err(Error::GraphFreed));
    assert_eq!(y.backward_retain(), Err(Error::GraphFreed));
    assert_eq!(x.grad().unwrap(), Some([6.0, 12.0, 18.0]));
    // The forward values are still readable, and a new graph built from the
    // leaf works.
    assert_eq!(y.item().unwrap(), 14.0);
    x.zero_grad().unwrap();
    let y2 = x.sin().sum();
    y2.backward().unwrap();
    close(
        "d sin",
        &x.grad().unwrap().unwrap(),
        &[1.0f32.cos(), 2.0f32.cos(), 3.0f32.cos()],
    );
}

/// f = (x + y)(y − z) at x = 1, y = 2, z = 3.
#[test]
fn product_of_sum_and_difference() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([1.0f32]).requires_grad();
    let y = g.tensor([2.0f32]).requires_grad();
    let z = g.tensor([3.0f32]).requires_grad();
    let f = (x + y) * (y - z);
    assert_eq!(f.to_array().unwrap(), [-3.0]);
    assert_eq!(f.grad_fn(), Some("MulBackward"));
    f.backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([-1.0]));
    assert_eq!(y.grad().unwrap(), Some([2.0]));
    assert_eq!(z.grad().unwrap(), Some([-3.0]));
}

/// z = w @ x with only w requiring grad: x.grad is None, w.grad accumulates,
/// and nothing is recorded under `no_grad`.
#[test]
fn dot_product_grads_and_no_grad() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let w = g.tensor([1.0f32, 1.0, 1.0]).requires_grad();
    let x = g.tensor([1.0f32, 2.0, 3.0]);
    let z = w.matmul(x);
    assert_eq!(z.item().unwrap(), 6.0);
    assert_eq!(z.grad_fn(), Some("MmBackward"));
    z.backward().unwrap();
    assert_eq!(w.grad().unwrap(), Some([1.0, 2.0, 3.0]));
    assert_eq!(x.grad().unwrap(), None);

    let z = w.matmul(x);
    z.backward().unwrap();
    assert_eq!(w.grad().unwrap(), Some([2.0, 4.0, 6.0]));

    // Under no_grad the result does not require grad, has no grad_fn, and
    // backward refuses; w.grad is untouched.
    let z = g.no_grad(|| w.matmul(x) * 2.0);
    assert_eq!(z.item().unwrap(), 12.0);
    assert!(!z.is_requires_grad());
    assert_eq!(z.grad_fn(), None);
    assert_eq!(z.backward(), Err(Error::NoGradient));
    assert_eq!(w.grad().unwrap(), Some([2.0, 4.0, 6.0]));
    assert!(g.is_grad_enabled(), "recording resumes after no_grad");
    let z = w.matmul(x);
    assert!(z.is_requires_grad());
    g.status().unwrap();
}

/// The external gradient of a vector-Jacobian product can be a tensor of
/// the same graph.
#[test]
fn backward_with_a_tensor_gradient() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.tensor([2.0f32, 3.0]).requires_grad();
    let q = a.pow(3.0) * 3.0;
    let v = g.tensor([1.0f32, 2.0]);
    q.backward_with_tensor(&v, true).unwrap();
    assert_eq!(a.grad().unwrap(), Some([36.0, 162.0]));
    q.backward_with_tensor(&v, false).unwrap();
    assert_eq!(a.grad().unwrap(), Some([72.0, 324.0]));
    assert_eq!(q.backward_with_tensor(&v, false), Err(Error::GraphFreed));
}

/// `no_grad` also covers parameters: a parameter read under it is a constant.
#[test]
fn no_grad_with_parameters() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let p = mem.param::<Rank1<2>>(&[1.0, 2.0]).unwrap();
    {
        let g = Graph::new(&mut mem);
        let y = g.no_grad(|| (g.param(&p) * 3.0).sum());
        assert_eq!(y.item().unwrap(), 9.0);
        assert!(!y.is_requires_grad());
        assert_eq!(y.backward(), Err(Error::NoGradient));
        let y = (g.param(&p) * 3.0).sum();
        assert!(y.is_requires_grad());
        y.backward().unwrap();
    }
    assert_eq!(mem.grad(&p).unwrap(), [3.0, 3.0]);
}

/// y = x·x detached is a constant: z = x·y gives dz/dx = y = 4 at x = 2.
#[test]
fn detach_makes_a_constant() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([2.0f32]).requires_grad();
    let y = (x * x).detach();
    assert!(!y.is_requires_grad());
    assert_eq!(y.grad_fn(), None);
    assert_eq!(y.to_array().unwrap(), [4.0]);
    let z = x * y;
    z.backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([4.0]));
}

/// y = sin(x)(sin²x + cos²x) = sin x, so the gradient is cos x.
#[test]
fn sin_times_pythagorean_identity() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.linspace::<5>(-2.0, 2.0).requires_grad();
    let y = x.sin() * (x.sin().pow(2.0) + x.cos().pow(2.0));
    y.sum().backward().unwrap();
    close(
        "x.grad",
        &x.grad().unwrap().unwrap(),
        &[-0.4161468, 0.5403023, 1.0, 0.5403023, -0.4161468],
    );
}

/// Which tensors require grad, and their `grad_fn` names.
#[test]
fn requires_grad_propagation_and_grad_fn_names() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.tensor([[1.0f32, 2.0], [3.0, 4.0]]);
    let b = g.tensor([[0.5f32, -1.0], [2.0, 1.0]]);
    // Neither requires grad: no result does.
    let c = (a * b + a).exp().sum();
    assert!(!a.is_requires_grad() && !c.is_requires_grad());
    assert_eq!(c.grad_fn(), None);
    assert_eq!(c.backward(), Err(Error::NoGradient));
    assert_eq!(a.grad().unwrap(), None);

    let x = g.tensor([[1.0f32, 2.0], [3.0, 4.0]]).requires_grad();
    assert!(x.is_requires_grad());
    assert_eq!(x.grad_fn(), None, "leaves have no grad_fn");
    assert_eq!(
        x.grad().unwrap(),
        None,
        "a new leaf has no grad until a backward reaches it (PyTorch's None)"
    );
    let names: [(Option<&str>, T<'_, Rank2<2, 2>>); 16] = [
        (Some("AddBackward"), x + b),
        (Some("AddBackward"), x + 1.0),
        (Some("SubBackward"), b - x),
        (Some("MulBackward"), a * x),
        (Some("MulBackward"), x * 2.0),
        (Some("DivBackward"), x / b),
        (Some("NegBackward"), -x),
        (Some("PowBackward"), x.pow(3.0)),
        (Some("ExpBackward"), x.exp()),
        (Some("LogBackward"), x.ln()),
        (Some("SigmoidBackward"), x.sigmoid()),
        (Some("ReluBackward"), x.relu()),
        (Some("MmBackward"), a.matmul(x)),
        (Some("SoftmaxBackward"), x.softmax::<1>()),
        (Some("LogSoftmaxBackward"), x.log_softmax::<0>()),
        (Some("TransposeBackward"), x.t()),
    ];
    for (name, t) in names {
        assert!(t.is_requires_grad(), "{name:?}");
        assert_eq!(t.grad_fn(), name);
    }
    assert_eq!(x.sum().grad_fn(), Some("SumBackward"));
    assert_eq!(x.max().grad_fn(), Some("MaxBackward"));
    assert_eq!(x.reshape::<Rank1<4>>().grad_fn(), Some("ViewBackward"));
    assert_eq!(
        x.cat_to::<0, Rank2<4, 2>, _>(a).grad_fn(),
        Some("CatBackward"),
        "one input requiring grad is enough"
    );
    // The same ops on `a` alone do not require grad.
    assert_eq!(a.t().grad_fn(), None);
    assert_eq!(a.cat_to::<0, Rank2<4, 2>, _>(b).grad_fn(), None);
    g.status().unwrap();
}

/// Only leaves that require grad keep a gradient; an intermediate's is
/// scratch, released after the walk (PyTorch's `.grad` of a non-leaf is None).
#[test]
fn intermediate_gradients_are_not_kept() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([1.0f32, -2.0]).requires_grad();
    let y = x * 3.0;
    let z = y.square().sum();
    z.backward().unwrap();
    assert_eq!(y.grad().unwrap(), None);
    assert_eq!(x.grad().unwrap(), Some([18.0, -36.0]));
}

/// `requires_grad` on a non-leaf, and `backward` on a vector.
#[test]
fn misuse_is_reported() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([1.0f32, 2.0]).requires_grad();
    let y = x * 2.0;
    assert_eq!(y.backward(), Err(Error::NotScalar { numel: 2 }));
    assert_eq!(
        y.backward_with(&[1.0]),
        Err(Error::Length {
            expected: 2,
            found: 1
        })
    );
    let _ = y.requires_grad();
    assert_eq!(g.status(), Err(Error::NotALeaf));
}

// ================================================= errors, never panics

/// Parameters that do not fit.
#[test]
fn memory_too_small_for_a_parameter() {
    let mut buf = [0.0f32; 8];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    assert_eq!(
        mem.param::<Rank1<5>>(&[0.0; 5]),
        Err(Error::OutOfMemory {
            needed: 10,
            available: 8
        })
    );
    let p = mem.param::<Rank1<2>>(&[1.0, 2.0]).unwrap();
    assert_eq!(mem.used(), 4);
    assert_eq!(
        mem.param_shaped((3usize,), &[0.0; 3]),
        Err(Error::OutOfMemory {
            needed: 6,
            available: 4
        })
    );
    assert_eq!(mem.value(&p).unwrap(), [1.0, 2.0]);
}

/// A graph that runs out of memory records the first error; later
/// operations yield invalid tensors and every `Result` reports it.
#[test]
fn out_of_memory_is_an_error_and_sticky() {
    let mut buf = [0.0f32; 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut g = Graph::new(&mut mem);
    let a = g.tensor([1.0f32; 8]);
    let b = g.tensor([2.0f32; 8]);
    assert_eq!(g.used(), 16);
    g.status().unwrap();
    let c = a + b; // needs 8 more floats
    let oom = Error::OutOfMemory {
        needed: 8,
        available: 0,
    };
    assert_eq!(g.status(), Err(oom));
    assert!(!c.is_valid() && !a.is_valid());
    // Everything after it fails with the same, first, error.
    let d = (c * a).exp().sum();
    assert_eq!(d.item(), Err(oom));
    assert_eq!(d.backward(), Err(oom));
    assert_eq!(a.to_array(), Err(oom));
    let _ = g.tensor([[1.0f32; 40]; 40]);
    let _ = g.zeros::<Rank1<1>>().requires_grad();
    assert_eq!(g.status(), Err(oom));
    assert_eq!(g.used(), 16, "a failed op takes no memory");
    // `reset` clears the error and returns the memory.
    g.reset();
    g.status().unwrap();
    assert_eq!(g.used(), 0);
    let x = g.tensor([3.0f32; 2]).requires_grad();
    let y = (x * x).sum();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([6.0; 2]));
}

/// A forward pass that fits but whose backward pass does not.
#[test]
fn out_of_memory_during_backward() {
    let mut buf = [0.0f32; 16];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([1.0f32, 2.0, 3.0, 4.0]).requires_grad(); // 4 + 4 (grad)
    let y = x * x; // 4
    let s = y.sum(); // 1
    assert_eq!(g.used(), 13);
    assert!(matches!(s.backward(), Err(Error::OutOfMemory { .. })));
    // Nothing reached the leaf (its gradient is None, as in PyTorch), and
    // the scratch was returned.
    assert_eq!(x.grad().unwrap(), None);
    assert_eq!(g.used(), 13);
}

/// A full node table: `TooManyNodes`, first error kept, nothing panics.
#[test]
fn too_many_nodes_is_an_error_and_sticky() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let p = mem.param::<Rank1<2>>(&[1.0, 2.0]).unwrap();
    let mut g = Graph::<Cpu, 4>::with_capacity(&mut mem);
    let x = g.tensor([1.0f32, 2.0]).requires_grad();
    let y = x * 2.0;
    let z = y + x;
    let w = z.sum();
    assert_eq!(g.len(), 4);
    g.status().unwrap();
    let used = g.used();
    let v = w * 3.0;
    let full = Error::TooManyNodes { capacity: 4 };
    assert_eq!(g.status(), Err(full));
    assert_eq!(v.item(), Err(full));
    assert_eq!(w.backward(), Err(full));
    let _ = g.param(&p);
    let _ = g.tensor([[0.0f32; 100]; 100]); // would not fit either
    assert_eq!(g.status(), Err(full), "the first error is kept");
    assert_eq!((g.len(), g.used()), (4, used));
    g.reset();
    assert!(g.is_empty());
    g.status().unwrap();

    // The default capacity: a long chain fails cleanly too.
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let mut t = g.tensor([0.0f32]);
    for _ in 0..200 {
        t = t + 1.0;
    }
    assert_eq!(
        t.item(),
        Err(Error::TooManyNodes {
            capacity: ember_nn_core::DEFAULT_NODES
        })
    );
}

/// Run-time dimensions that disagree: a `Shape` error, not a panic.
#[test]
fn run_time_shape_mismatch() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a: T<'_, Batch<3>> = g.from_slice((2usize, Const::<3>), &[1.0; 6]);
    let b: T<'_, Batch<3>> = g.from_slice((3usize, Const::<3>), &[1.0; 9]);
    g.status().unwrap();
    let c = a + b;
    match g.status() {
        Err(Error::Shape {
            expected, found, ..
        }) => {
            assert_eq!(expected.as_slice(), &[2, 3]);
            assert_eq!(found.as_slice(), &[3, 3]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(matches!(c.sum().item(), Err(Error::Shape { .. })));
}

/// The other run-time shape checks: matmul's inner dimension, reshape's
/// element count, flatten's and squeeze's on run-time dimensions, and a host
/// slice's length.
#[test]
fn run_time_shape_checks() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut g = Graph::new(&mut mem);
    let shape_err = |g: &Graph<'_, Cpu>| matches!(g.status(), Err(Error::Shape { .. }));

    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let b = g.from_slice((4usize, 2usize), &[1.0; 8]);
    let _ = a.matmul(b);
    assert!(shape_err(&g), "matmul {:?}", g.status());
    g.reset();

    // Each view's error is named after the view the caller used.
    let view_err = |g: &Graph<'_, Cpu>| match g.status() {
        Err(Error::Shape { op, .. }) => op,
        other => panic!("expected a shape error, got {other:?}"),
    };
    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let _ = a.reshape_to((4usize,));
    assert_eq!(view_err(&g), "reshape");
    g.reset();

    let a = g.from_slice((2usize, 3usize, 2usize), &[1.0; 12]);
    let _ = a.flatten::<5>();
    assert_eq!(view_err(&g), "flatten");
    g.reset();

    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let _ = a.squeeze::<0>();
    assert_eq!(view_err(&g), "squeeze: the axis is not of size 1");
    g.reset();

    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let b = g.from_slice((2usize, 4usize), &[1.0; 8]);
    let _ = a.cat::<0, _>(b);
    assert!(shape_err(&g), "cat {:?}", g.status());
    g.reset();

    let _ = g.from_slice((2usize, 3usize), &[1.0; 5]);
    assert_eq!(
        g.status(),
        Err(Error::Length {
            expected: 6,
            found: 5
        })
    );
}

/// Regression: `stack` of two tensors whose types agree but whose run-time
/// dimensions differ (same element count) used to succeed silently.
#[test]
fn stack_checks_run_time_dimensions() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut g = Graph::new(&mut mem);
    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let b = g.from_slice((3usize, 2usize), &[1.0; 6]);
    let s = a.stack(b);
    assert!(!s.is_valid());
    match g.status() {
        Err(Error::Shape {
            expected, found, ..
        }) => {
            assert_eq!(expected.as_slice(), &[2, 3]);
            assert_eq!(found.as_slice(), &[3, 2]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    g.reset();
    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let b = g.from_slice((2usize, 3usize), &[2.0; 6]);
    let s = a.stack(b);
    assert_eq!(s.dims().as_slice(), &[2, 2, 3]);
    assert_eq!(s.sum().item().unwrap(), 18.0);
}

/// Regression: an external gradient held by a tensor of another graph used
/// to be looked up by its id in this graph (here a node of the same shape),
/// silently seeding backward with the wrong values.
#[test]
fn backward_with_a_tensor_of_another_graph_is_refused() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut buf2 = buffer();
    let mut mem2 = Memory::new(&Cpu, &mut buf2[..]);
    let g = Graph::new(&mut mem);
    let g2 = Graph::new(&mut mem2);
    let x = g.tensor([1.0f32, 2.0]).requires_grad(); // node 0 of g
    let y = x * 3.0;
    let _unused = g2.tensor([9.0f32, 9.0]); // node 0 of g2
    let v2 = g2.tensor([5.0f32, 7.0]); // node 1 of g2; node 1 of g is y
    assert_eq!(y.backward_with_tensor(&v2, true), Err(Error::InvalidTensor));
    assert_eq!(x.grad().unwrap(), None);
    let v = g.tensor([5.0f32, 7.0]);
    y.backward_with_tensor(&v, false).unwrap();
    assert_eq!(x.grad().unwrap(), Some([15.0, 21.0]));
}

// ============================================================= activations

const XS: [f32; 7] = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0];

/// The values of `f(x)` at `XS`, and the gradient of their sum.
fn activation(f: impl for<'t> Fn(T<'t, Rank1<7>>) -> T<'t, Rank1<7>>) -> ([f32; 7], [f32; 7]) {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor(XS).requires_grad();
    let y = f(x);
    y.sum().backward().unwrap();
    (y.to_array().unwrap(), x.grad().unwrap().unwrap())
}

/// Compares an activation's values and gradients with the table (6 decimals:
/// `1e-5` relative plus half a unit in the last place).
#[track_caller]
fn table_row(
    name: &str,
    f: impl for<'t> Fn(T<'t, Rank1<7>>) -> T<'t, Rank1<7>>,
    value: [f32; 7],
    grad: [f32; 7],
) {
    let (v, d) = activation(f);
    close_tol(&format!("{name} value"), &v, &value, 1e-5, 5e-7);
    close_tol(&format!("{name} grad"), &d, &grad, 1e-5, 5e-7);
}

#[test]
fn relu_row() {
    table_row(
        "relu",
        |x| x.relu(),
        [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 3.0],
        [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0], // 0 at 0
    );
}

#[test]
fn leaky_relu_row() {
    table_row(
        "leaky_relu",
        |x| x.leaky_relu(0.01),
        [-0.03, -0.01, -0.005, 0.0, 0.5, 1.0, 3.0],
        [0.01, 0.01, 0.01, 0.01, 1.0, 1.0, 1.0],
    );
}

#[test]
fn sigmoid_row() {
    table_row(
        "sigmoid",
        |x| x.sigmoid(),
        [
            0.047426, 0.268941, 0.377541, 0.5, 0.622459, 0.731059, 0.952574,
        ],
        [
            0.045177, 0.196612, 0.235004, 0.25, 0.235004, 0.196612, 0.045177,
        ],
    );
}

#[test]
fn tanh_row() {
    table_row(
        "tanh",
        |x| x.tanh(),
        [
            -0.995055, -0.761594, -0.462117, 0.0, 0.462117, 0.761594, 0.995055,
        ],
        [
            0.009866, 0.419974, 0.786448, 1.0, 0.786448, 0.419974, 0.009866,
        ],
    );
}

#[test]
fn elu_row() {
    table_row(
        "elu",
        |x| x.elu(1.0),
        [-0.950213, -0.632121, -0.393469, 0.0, 0.5, 1.0, 3.0],
        [0.049787, 0.367879, 0.606531, 1.0, 1.0, 1.0, 1.0],
    );
}

#[test]
fn selu_row() {
    table_row(
        "selu",
        |x| x.selu(),
        [
            -1.670569, -1.111331, -0.691758, 0.0, 0.525351, 1.050701, 3.152103,
        ],
        [
            0.087531, 0.646769, 1.066341, 1.758099, 1.050701, 1.050701, 1.050701,
        ],
    );
}

#[test]
fn silu_row() {
    table_row(
        "silu",
        |x| x.silu(),
        [
            -0.142278, -0.268941, -0.18877, 0.0, 0.31123, 0.731059, 2.857723,
        ],
        [
            -0.088104, 0.072329, 0.260039, 0.5, 0.739961, 0.927671, 1.088104,
        ],
    );
}

/// GELU's tanh form: ember evaluates the same formula as PyTorch's
/// `approximate='tanh'`, so the table's tolerance applies unchanged.
#[test]
fn gelu_tanh_row() {
    table_row(
        "gelu_tanh",
        |x| x.gelu_tanh(),
        [
            -0.003637, -0.158808, -0.154286, 0.0, 0.345714, 0.841192, 2.996363,
        ],
        [
            -0.011584, -0.082964, 0.13263, 0.5, 0.86737, 1.082964, 1.011584,
        ],
    );
}

/// GELU's exact (erf) form, through `libm::erff`; same tolerance.
#[test]
fn gelu_erf_row() {
    table_row(
        "gelu",
        |x| x.gelu(),
        [
            -0.00405, -0.158655, -0.154269, 0.0, 0.345731, 0.841345, 2.99595,
        ],
        [
            -0.011946, -0.083315, 0.132505, 0.5, 0.867495, 1.083315, 1.011946,
        ],
    );
}

#[test]
fn softsign_row() {
    table_row(
        "softsign",
        |x| x.softsign(),
        [-0.75, -0.5, -0.333333, 0.0, 0.333333, 0.5, 0.75],
        [0.0625, 0.25, 0.444444, 1.0, 0.444444, 0.25, 0.0625],
    );
}

// ================================================================== losses

const SOFTMAX_L: [[f32; 3]; 2] = [
    [0.0900306, 0.2447285, 0.6652409],
    [0.4683105, 0.4683105, 0.0633789],
];

#[test]
fn softmax_and_log_softmax_values() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let l = g.tensor([[1.0f32, 2.0, 3.0], [1.0, 1.0, -1.0]]);
    let p = l.softmax::<1>().to_array().unwrap();
    close("softmax", p.as_flattened(), SOFTMAX_L.as_flattened());
    let lp = l.log_softmax::<1>().to_array().unwrap();
    close(
        "log_softmax",
        lp.as_flattened(),
        &[
            -2.4076059, -1.4076059, -0.4076059, -0.7586237, -0.7586237, -2.7586236,
        ],
    );
    // Along axis 0 of the transpose: the same numbers, transposed.
    let pt = l.t().softmax::<0>().t().to_array().unwrap();
    close(
        "softmax axis 0",
        pt.as_flattened(),
        SOFTMAX_L.as_flattened(),
    );
}

/// nll_loss(log_softmax(l), [2, 0]) = cross_entropy(l, [2, 0]) as
/// `−(log_softmax(l) ⊙ onehot).sum() / 2`; its gradient is `(softmax − onehot) / 2`.
#[test]
fn cross_entropy_composed_from_ops() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let l = g
        .tensor([[1.0f32, 2.0, 3.0], [1.0, 1.0, -1.0]])
        .requires_grad();
    let onehot = g.tensor([[0.0f32, 0.0, 1.0], [1.0, 0.0, 0.0]]);
    let loss = -(l.log_softmax::<1>() * onehot).sum() / 2.0;
    close("nll", &[loss.item().unwrap()], &[0.5831148]);
    loss.backward().unwrap();
    let mut expected = SOFTMAX_L;
    for (row, t) in expected.iter_mut().zip([2, 0]) {
        row[t] -= 1.0;
        row.iter_mut().for_each(|v| *v /= 2.0);
    }
    close_tol(
        "d nll / d logits",
        l.grad().unwrap().unwrap().as_flattened(),
        expected.as_flattened(),
        1e-5,
        1e-7,
    );

    // CrossEntropyLoss(logits [[1, 2, 3]], target [1]).
    let l1 = g.tensor([[1.0f32, 2.0, 3.0]]);
    let ce = -(l1.log_softmax::<1>() * g.tensor([[0.0f32, 1.0, 0.0]])).sum();
    close("cross_entropy", &[ce.item().unwrap()], &[1.4076059]);
}

/// The fused loss (`nn::loss::cross_entropy`, one node) gives the reference's
/// numbers and the same gradient, `(softmax − onehot) / rows`; bad targets
/// are typed errors, and a NaN logit gives a NaN loss, not a panic.
#[test]
fn cross_entropy_fused() {
    use ember_nn_core::nn::loss::{cross_entropy, Reduction};
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let l = g
        .tensor([[1.0f32, 2.0, 3.0], [1.0, 1.0, -1.0]])
        .requires_grad();
    let loss = cross_entropy(l, &[2, 0], Reduction::Mean);
    close("cross_entropy mean", &[loss.item().unwrap()], &[0.5831148]);
    loss.backward().unwrap();
    let mut expected = SOFTMAX_L;
    for (row, t) in expected.iter_mut().zip([2, 0]) {
        row[t] -= 1.0;
        row.iter_mut().for_each(|v| *v /= 2.0);
    }
    close_tol(
        "d cross_entropy / d logits",
        l.grad().unwrap().unwrap().as_flattened(),
        expected.as_flattened(),
        1e-5,
        1e-7,
    );
    let rows = g.tensor([[1.0f32, 2.0, 3.0]]).requires_grad();
    let per_row = rows.cross_entropy_rows(g.tensor([1.0f32]));
    assert_eq!(per_row.grad_fn(), Some("NllLossBackward"));
    let mut v = [0.0];
    per_row.read(&mut v).unwrap();
    close("cross_entropy_rows", &v, &[1.4076059]);
    let sum = cross_entropy(l, &[2, 0], Reduction::Sum);
    close(
        "cross_entropy sum",
        &[sum.item().unwrap()],
        &[2.0 * 0.5831148],
    );

    // A NaN logit: a NaN loss for its row.
    let nan = g.tensor([[f32::NAN, 0.0], [0.0, 1.0]]);
    let mut v = [0.0; 2];
    nan.cross_entropy_rows(g.tensor([0.0f32, 1.0]))
        .read(&mut v)
        .unwrap();
    assert!(v[0].is_nan() && (v[1] - 0.3132617).abs() < 1e-6, "{v:?}");

    // Typed errors, sticky on the graph.
    {
        let g = Graph::new(&mut mem);
        let l = g.tensor([[1.0f32, 2.0, 3.0]]);
        let e = cross_entropy(l, &[3], Reduction::Mean).item();
        assert_eq!(
            e,
            Err(Error::InvalidArgument {
                what: "class index out of range"
            })
        );
    }
    let g = Graph::new(&mut mem);
    let l = g.tensor([[1.0f32, 2.0, 3.0]]);
    let e = cross_entropy(l, &[0, 1], Reduction::Mean).item();
    assert_eq!(
        e,
        Err(Error::Length {
            expected: 1,
            found: 2
        })
    );
}

/// `linear_act` equals `linear` then the activation, value and gradients,
/// and records one node named after the activation (as PyTorch names
/// `relu(addmm(...))`'s `grad_fn`).
#[test]
fn linear_act_equals_linear_then_activation() {
    use ember_nn_core::ops::map::Map;
    for f in [
        Map::Relu,
        Map::LeakyRelu(0.2),
        Map::Sigmoid,
        Map::Tanh,
        Map::Silu,
    ] {
        let mut results = Vec::new();
        for fused in [false, true] {
            let mut buf = buffer();
            let mut mem = Memory::new(&Cpu, &mut buf[..]);
            let x = mem.param(&[[1.0f32, -2.0, 0.5], [0.3, 0.1, -0.7]]).unwrap();
            let w = mem.param(&[[0.2f32, -0.4, 0.6], [-0.1, 0.5, 0.3]]).unwrap();
            let b = mem.param(&[0.05f32, -0.3]).unwrap();
            let g = Graph::new(&mut mem);
            let (xt, wt, bt) = (g.param(&x), g.param(&w), g.param(&b));
            let y = if fused {
                xt.linear_act(wt, bt, f)
            } else {
                xt.linear(wt, bt).map(f)
            };
            assert_eq!(y.grad_fn(), Some(f.name()), "{f:?}");
            let weights = g.tensor([[1.0f32, -2.0], [0.5, 3.0]]);
            (y * weights).sum().backward().unwrap();
            let mut r = vec![0.0; 4];
            y.read(&mut r).unwrap();
            let (mut dx, mut dw, mut db) = ([0.0; 6], [0.0; 6], [0.0; 2]);
            assert!(xt.read_grad(&mut dx).unwrap());
            assert!(wt.read_grad(&mut dw).unwrap());
            assert!(bt.read_grad(&mut db).unwrap());
            r.extend(dx.iter().chain(&dw).chain(&db));
            results.push(r);
        }
        close_tol(&format!("{f:?}"), &results[1], &results[0], 1e-6, 1e-7);
    }
}

/// The other losses of the reference, composed from ops.
#[test]
fn mse_l1_and_bce_composed_from_ops() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let pred = g.tensor([[0.5f32, -1.0], [2.0, 0.0]]);
    let target = g.tensor([[1.0f32, 0.0], [1.5, -0.5]]);
    close(
        "mse",
        &[(pred - target).square().mean().item().unwrap()],
        &[0.4375],
    );
    close(
        "l1",
        &[(pred - target).abs().mean().item().unwrap()],
        &[0.625],
    );
    let p = g.tensor([0.9f32, 0.2, 0.6]);
    let y = g.tensor([1.0f32, 0.0, 1.0]);
    let bce = -(y * p.ln() + (1.0 - y) * (1.0 - p).ln()).mean();
    close("bce", &[bce.item().unwrap()], &[0.2797766]);
}

/// One linear layer and BCE with logits, with
/// `bce_with_logits(z, y) = mean(max(z, 0) − z·y + ln(1 + e^{−|z|}))`.
#[test]
fn linear_layer_with_bce_with_logits() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let w = mem
        .param_from_fn::<Rank2<5, 3>>(|i| i as f32 * 0.1 - 0.7)
        .unwrap();
    let b = mem.param::<Rank1<3>>(&[0.1, -0.2, 0.3]).unwrap();
    {
        let g = Graph::new(&mut mem);
        let x = g.ones::<Rank1<5>>();
        let y = g.zeros::<Rank1<3>>();
        let z = x.matmul(g.param(&w)) + g.param(&b);
        close("z", &z.to_array().unwrap(), &[-0.4, -0.2, 0.8]);
        let loss = (z.relu() - z * y + z.abs().neg().exp().add_scalar(1.0).ln()).mean();
        close("loss", &[loss.item().unwrap()], &[0.7607517]);
        loss.backward().unwrap();
    }
    let dz = [0.1337708, 0.1500553, 0.2299915];
    close("b.grad", &mem.grad(&b).unwrap(), &dz);
    let gw = mem.grad(&w).unwrap();
    for (i, row) in gw.iter().enumerate() {
        close(&format!("w.grad row {i}"), row, &dz);
    }
}

/// A leaf's gradient is `None` until a backward reaches it, as PyTorch's
/// `x.grad`: before any backward, and after one whose loss does not use it;
/// then it is there, and `zero_grad` keeps it (zeros), as `x.grad.zero_()`.
#[test]
fn a_leaf_no_backward_reached_has_no_gradient() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let used = g.tensor([1.0f32, 2.0]).requires_grad();
    let unused = g.tensor([3.0f32, 4.0]).requires_grad();
    assert_eq!(used.grad().unwrap(), None);
    let mut out = [9.0f32; 2];
    assert!(!unused.read_grad(&mut out).unwrap());
    assert_eq!(out, [9.0, 9.0]);
    (used * used).sum().backward().unwrap();
    assert_eq!(used.grad().unwrap(), Some([2.0, 4.0]));
    assert_eq!(unused.grad().unwrap(), None);
    used.zero_grad().unwrap();
    assert_eq!(used.grad().unwrap(), Some([0.0, 0.0]));
    // The root itself, when it is the leaf.
    let root = g.tensor([5.0f32]).requires_grad();
    root.backward_with(&[2.0]).unwrap();
    assert_eq!(root.grad().unwrap(), Some([2.0]));
}

/// Gradients at kinks and ties, as PyTorch gives them:
/// - `clamp(x, lo, hi)` at exactly a bound gives 0 (PyTorch 2.15 measured:
///   `std-backend/tests/data/torch_conventions.json`), 1 strictly inside;
/// - `max()` over tied maxima splits the gradient evenly
///   (`evenly_distribute_backward`), and so does `amax` along an axis;
/// - `relu` at 0 gives 0 (its mask is `x > 0`).
#[test]
fn gradients_at_kinks_and_ties() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.tensor([-1.0f32, 0.0, 0.5, 1.0, 2.0]).requires_grad();
    x.clamp(0.0, 1.0).sum().backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([0.0, 0.0, 1.0, 0.0, 0.0]));

    let x = g.tensor([1.0f32, 3.0, 3.0, -2.0, 3.0]).requires_grad();
    x.max().mul_scalar(6.0).backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([0.0, 2.0, 2.0, 0.0, 2.0]));

    // torch.amax(x, dim=1) for [[1, 1], [0, 2]]: [[0.5, 0.5], [0, 1]].
    let x = g.tensor([[1.0f32, 1.0], [0.0, 2.0]]).requires_grad();
    x.max_axis::<1>().sum().backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([[0.5, 0.5], [0.0, 1.0]]));
    // Along the first axis, with a tie in the second column.
    let x = g.tensor([[1.0f32, 4.0], [3.0, 4.0]]).requires_grad();
    x.max_axis::<0>().sum().backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([[0.0, 0.5], [1.0, 0.5]]));

    let x = g.tensor([-1.0f32, 0.0, 1.0]).requires_grad();
    x.relu().sum().backward().unwrap();
    assert_eq!(x.grad().unwrap(), Some([0.0, 0.0, 1.0]));
}

/// Long float32 sums add pairwise: the mean of 55,643 values of 0.1 is off
/// from the float64 mean by no more than PyTorch's (about 1e-8 relative);
/// adding in order is off by about 4.6e-4 here. Along an axis with columns
/// (`sum_axis::<0>`) too.
#[test]
fn long_sums_are_pairwise() {
    const N: usize = 55_643;
    let data: Vec<f32> = (0..N).map(|i| 0.1 + (i % 7) as f32 * 1e-3).collect();
    let exact: f64 = data.iter().map(|&v| f64::from(v)).sum::<f64>() / N as f64;
    let in_order = data.iter().sum::<f32>() / N as f32;
    assert!(
        ((f64::from(in_order) - exact) / exact).abs() > 1e-5,
        "the data should show the in-order error"
    );
    let mut buf = vec![0.0f32; 4 * N + 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let x = g.from_slice((N,), &data);
    let mean = f64::from(x.mean().item().unwrap());
    assert!(
        ((mean - exact) / exact).abs() < 1e-7,
        "mean {mean} vs {exact}"
    );
    // The same values as a column: [N, 2] summed over the rows.
    let two: Vec<f32> = data.iter().flat_map(|&v| [v, -v]).collect();
    let x = g.from_slice((N, Const::<2>), &two);
    let mut col = [0.0f32; 2];
    x.sum_axis::<0>().read(&mut col).unwrap();
    let exact_sum = exact * N as f64;
    for (c, sign) in col.iter().zip([1.0, -1.0]) {
        let rel = ((f64::from(*c) * sign - exact_sum) / exact_sum).abs();
        assert!(rel < 1e-7, "column sum {c} vs {exact_sum}: {rel}");
    }
}

/// PyTorch's broadcasting: `v + m` and `m + v` for a row vector, a column
/// times a row, a scalar tensor with a matrix, shapes of equal sizes but
/// other types, and a size mismatch as a shape error.
#[test]
fn broadcasting_on_either_side() {
    use ember_nn_core::ops::zip::Zip;
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let m = g.tensor([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    let v = g.tensor([10.0f32, 20.0, 30.0]).requires_grad();
    // torch: v - m = [[9, 18, 27], [6, 15, 24]]; d(sum)/dv = [2, 2, 2].
    let left: T<'_, Rank2<2, 3>> = v - m;
    assert_eq!(
        left.to_array().unwrap(),
        [[9.0, 18.0, 27.0], [6.0, 15.0, 24.0]]
    );
    left.sum().backward().unwrap();
    assert_eq!(v.grad().unwrap(), Some([2.0, 2.0, 2.0]));
    assert_eq!(
        (m + v).to_array().unwrap(),
        [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]
    );

    // [2, 1] * [1, 3] = [2, 3] (a compile-time 1 on the left cannot widen
    // in the type, so the column is run-time here).
    let col = g.from_slice((2usize, 1usize), &[1.0, 2.0]).requires_grad();
    let row = g.tensor([[1.0f32, 10.0, 100.0]]).requires_grad();
    let outer: T<'_, (usize, usize)> = col.broadcast_zip(row, Zip::Mul);
    let mut out = [0.0f32; 6];
    outer.read(&mut out).unwrap();
    assert_eq!(out, [1.0, 10.0, 100.0, 2.0, 20.0, 200.0]);
    outer.sum().backward().unwrap();
    let mut gc = [0.0f32; 2];
    assert!(col.read_grad(&mut gc).unwrap());
    assert_eq!(gc, [111.0, 111.0]);
    assert_eq!(row.grad().unwrap(), Some([[3.0, 3.0, 3.0]]));

    // A 0-d tensor on either side.
    let s = g.tensor(2.0f32);
    assert_eq!(
        (s * m).to_array().unwrap(),
        [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]
    );
    assert_eq!(
        (m / s).to_array().unwrap(),
        [[0.5, 1.0, 1.5], [2.0, 2.5, 3.0]]
    );

    // (usize, Const<3>) with (Const<2>, Const<3>) combine (run-time where
    // either is), and `expand_as` gives the other's type.
    let batch = g.from_slice((2usize, Const::<3>), &[1.0; 6]);
    let sum: T<'_, (usize, Const<3>)> = batch.broadcast_zip(m, Zip::Add);
    let mut out = [0.0f32; 6];
    sum.read(&mut out).unwrap();
    assert_eq!(out, [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let typed: T<'_, Rank2<2, 3>> = batch.expand_as(&m);
    assert_eq!((typed + m).to_array().unwrap()[1], [5.0, 6.0, 7.0]);

    // Sizes that do not broadcast: a run-time shape error.
    let a = g.from_slice((2usize, 3usize), &[1.0; 6]);
    let b = g.from_slice((4usize,), &[1.0; 4]);
    let _ = a + b;
    assert!(
        matches!(g.status(), Err(Error::Shape { .. })),
        "{:?}",
        g.status()
    );
}

/// `cat` infers its result: the axis becomes a run-time dimension.
#[test]
fn cat_infers_its_shape() {
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let a = g.tensor([[1.0f32, 2.0], [3.0, 4.0]]).requires_grad();
    let b = g.tensor([[5.0f32], [6.0]]).requires_grad();
    let c: T<'_, (Const<2>, usize)> = a.cat::<1, _>(b);
    assert_eq!(c.dims().as_slice(), &[2, 3]);
    let mut out = [0.0f32; 6];
    c.read(&mut out).unwrap();
    assert_eq!(out, [1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    c.square().sum().backward().unwrap();
    assert_eq!(b.grad().unwrap(), Some([[10.0], [12.0]]));
}

// ============================================================ BatchNorm1d

/// PyTorch's `nn.BatchNorm1d(3)` with γ = [1.5, −0.5, 2], β = [0.1, 0.2, −0.3]:
/// two training steps (outputs, the second's gradients, the running
/// statistics after both), then evaluation mode (output and gradients).
/// The numbers are `std-backend/tests/data/torch_batchnorm.json`, written by
/// `scripts/torch-fixtures.py` (PyTorch 2.15, float32).
#[test]
fn batch_norm_1d_matches_pytorch() {
    use ember_nn_core::nn::{BatchNorm1d, Forward, Module};
    let x1 = [
        [0.5f32, -1.0, 2.0],
        [1.5, 0.0, -1.0],
        [-0.5, 2.0, 0.5],
        [2.5, 1.0, 0.0],
    ];
    let x2 = [
        [1.0f32, 3.0, -2.0],
        [0.0, -1.0, 1.0],
        [2.0, 0.5, 0.0],
        [-1.0, 1.5, 3.0],
    ];
    let w = [
        [0.3f32, -0.7, 1.1],
        [0.9, 0.2, -0.4],
        [-0.6, 0.8, 0.5],
        [0.1, -0.3, 0.7],
    ];
    let x3 = [[0.2f32, -0.4, 1.0], [1.8, 2.2, -0.6]];

    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut bn = BatchNorm1d::<3>::new(&mut mem).unwrap();
    mem.set_value(&bn.weight, &[1.5, -0.5, 2.0]).unwrap();
    mem.set_value(&bn.bias, &[0.1, 0.2, -0.3]).unwrap();
    assert!(bn.is_training());

    {
        let g = Graph::new(&mut mem);
        let y1 = bn.forward(g.tensor(x1));
        close(
            "train y1",
            y1.to_array().unwrap().as_flattened(),
            &[
                -0.5708177089691162,
                0.8708177208900452,
                2.7022085189819336,
                0.770817756652832,
                0.42360591888427734,
                -2.8403303623199463,
                -1.9124531745910645,
                -0.4708176851272583,
                -0.06906092166900635,
                2.1124532222747803,
                -0.02360588312149048,
                -0.9928174018859863,
            ],
        );
        let x = g.tensor(x2).requires_grad();
        let y2 = bn.forward(x);
        close(
            "train y2",
            y2.to_array().unwrap().as_flattened(),
            &[
                0.770817756652832,
                -0.4859927296638489,
                -3.0734968185424805,
                -0.5708177089691162,
                0.885992705821991,
                0.25469934940338135,
                2.1124532222747803,
                0.371498167514801,
                -0.8546993732452393,
                -1.9124531745910645,
                0.028501808643341064,
                2.473496913909912,
            ],
        );
        assert_eq!(y2.grad_fn(), Some("NativeBatchNormBackward"));
        (y2 * g.tensor(w)).sum().backward().unwrap();
        close(
            "train x grad",
            x.grad().unwrap().unwrap().as_flattened(),
            &[
                0.34882375597953796,
                0.050441548228263855,
                0.3840235769748688,
                0.7915662527084351,
                0.12105663120746613,
                -0.9088537096977234,
                -0.49640953540802,
                -0.22698311507701874,
                -0.034135185182094574,
                -0.6439806818962097,
                0.05548493564128876,
                0.5589653253555298,
            ],
        );
    }
    close_tol(
        "train weight grad",
        &mem.grad(&bn.weight).unwrap(),
        &[-1.2074718475341797, -1.612082839012146, -0.8043140769004822],
        1e-5,
        1e-6,
    );
    close_tol(
        "train bias grad",
        &mem.grad(&bn.bias).unwrap(),
        &[0.7000000476837158, 0.0, 1.9000000953674316],
        1e-5,
        1e-6,
    );
    let mut rm = [0.0f32; 3];
    let mut rv = [0.0f32; 3];
    let mut nb = [0.0f32; 1];
    mem.read(bn.running_mean, &mut rm).unwrap();
    mem.read(bn.running_var, &mut rv).unwrap();
    mem.read(bn.num_batches_tracked, &mut nb).unwrap();
    close(
        "running_mean",
        &rm,
        &[
            0.14000000059604645,
            0.14499999582767487,
            0.08375000208616257,
        ],
    );
    // Updated with the unbiased variance (PyTorch's convention).
    close(
        "running_var",
        &rv,
        &[1.12666654586792, 1.2433332204818726, 1.383958339691162],
    );
    assert_eq!(nb, [2.0]);

    bn.zero_grad(&mut mem).unwrap();
    bn.eval();
    {
        let g = Graph::new(&mut mem);
        let x = g.tensor(x3).requires_grad();
        let y = bn.forward(x);
        close(
            "eval y",
            y.to_array().unwrap().as_flattened(),
            &[
                0.18478965759277344,
                0.44438299536705017,
                1.2576894760131836,
                2.4458470344543457,
                -0.7214808464050293,
                -1.4624232053756714,
            ],
        );
        (y * g.tensor([w[0], w[1]])).sum().backward().unwrap();
        close(
            "eval x grad",
            x.grad().unwrap().unwrap().as_flattened(),
            &[
                0.4239482879638672,
                0.3138864040374756,
                1.8700776100158691,
                1.2718448638916016,
                -0.08968183398246765,
                -0.6800282001495361,
            ],
        );
    }
    close(
        "eval weight grad",
        &mem.grad(&bn.weight).unwrap(),
        &[1.4244662523269653, 0.7107285261154175, 1.0892138481140137],
    );
    close(
        "eval bias grad",
        &mem.grad(&bn.bias).unwrap(),
        &[1.2000000476837158, -0.5, 0.7000000476837158],
    );
    // Evaluation leaves the running statistics alone.
    mem.read(bn.num_batches_tracked, &mut nb).unwrap();
    assert_eq!(nb, [2.0]);
}

/// A training batch of one row is an error, as PyTorch's "Expected more
/// than 1 value per channel when training"; evaluation mode takes it.
#[test]
fn batch_norm_1d_one_row_in_training_is_an_error() {
    use ember_nn_core::nn::{BatchNorm1d, Forward, Module};
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut bn = BatchNorm1d::<2>::new(&mut mem).unwrap();
    {
        let g = Graph::new(&mut mem);
        let y = bn.forward(g.tensor([[1.0f32, 2.0]]));
        assert!(!y.is_valid());
        match g.status() {
            Err(Error::InvalidArgument { what }) => {
                assert!(what.contains("Expected more than 1 value per channel when training"))
            }
            other => panic!("expected an InvalidArgument, got {other:?}"),
        }
    }
    bn.eval();
    let g = Graph::new(&mut mem);
    let y = bn.forward(g.tensor([[1.0f32, 2.0]]));
    g.status().unwrap();
    close(
        "eval one row",
        &y.to_array().unwrap()[0],
        &[0.999995, 1.99999],
    );
}

// ============================================================ BatchNorm2d

/// `tests/tests/data/torch_batchnorm2d.json`, written by
/// `scripts/torch-fixtures.py batchnorm2d`.
const BN2D_FIXTURE: &str = include_str!("data/torch_batchnorm2d.json");

/// The numbers of the top-level `key` of a fixture (a number or an array,
/// nested or not, read flat).
fn fixture_floats(json: &str, key: &str) -> Vec<f32> {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in the fixture"))
        + pat.len();
    let rest = json[at..].trim_start();
    let end = if rest.starts_with('[') {
        let mut depth = 0;
        rest.char_indices()
            .find(|&(_, c)| {
                depth += (c == '[') as i32 - (c == ']') as i32;
                depth == 0
            })
            .unwrap()
            .0
    } else {
        rest.find([',', '\n', '}']).unwrap()
    };
    rest[..end]
        .split(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<f64>().unwrap() as f32)
        .collect()
}

/// PyTorch's `nn.BatchNorm2d(3)` with γ = [1.5, −0.5, 2], β = [0.1, 0.2, −0.3]
/// on `[2, 3, 2, 3]` batches: two training steps (outputs, the second's
/// gradients, the running statistics after both, with the unbiased variance
/// of 12 values per channel), then evaluation mode on `[1, 3, 2, 3]`
/// (output and gradients). The inputs are formulas of the flat index, as in
/// the script; the expected numbers are read from its JSON.
#[test]
fn batch_norm_2d_matches_pytorch() {
    use ember_nn_core::nn::{BatchNorm2d, Forward, Module};
    let f = |key| fixture_floats(BN2D_FIXTURE, key);
    let make = |n: usize, v: &dyn Fn(usize) -> f32| (0..n).map(v).collect::<Vec<f32>>();
    let x1 = make(36, &|i| ((i * 37) % 19) as f32 * 0.25 - 2.25);
    let x2 = make(36, &|i| ((i * 23 + 5) % 17) as f32 * 0.25 - 2.0);
    let w = make(36, &|i| ((i * 13 + 3) % 11) as f32 * 0.125 - 0.625);
    let x3 = make(18, &|i| ((i * 29 + 7) % 13) as f32 * 0.25 - 1.5);
    assert_eq!((x1.clone(), x2.clone()), (f("x1"), f("x2")));
    assert_eq!((w.clone(), x3.clone()), (f("w"), f("x3")));
    assert_eq!(f("shape"), [2.0, 3.0, 2.0, 3.0]);
    let shape = (2usize, Const::<3>, Const::<2>, Const::<3>);

    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut bn = BatchNorm2d::<3>::new(&mut mem).unwrap();
    mem.set_value(&bn.weight, &[1.5, -0.5, 2.0]).unwrap();
    assert_eq!(f("weight"), [1.5, -0.5, 2.0]);
    mem.set_value(&bn.bias, &[0.1, 0.2, -0.3]).unwrap();
    assert_eq!(f("bias"), [0.1, 0.2, -0.3]);
    let mut out = [0.0f32; 36];
    {
        let g = Graph::new(&mut mem);
        let y1 = bn.forward(g.from_slice(shape, &x1));
        y1.read(&mut out).unwrap();
        close("train y1", &out, &f("train_y1"));
        let x = g.from_slice(shape, &x2).requires_grad();
        let y2 = bn.forward(x);
        assert_eq!(y2.grad_fn(), Some("NativeBatchNormBackward"));
        y2.read(&mut out).unwrap();
        close("train y2", &out, &f("train_y2"));
        (y2 * g.from_slice(shape, &w)).sum().backward().unwrap();
        assert!(x.read_grad(&mut out).unwrap());
        close("train x grad", &out, &f("train_x2_grad"));
    }
    close_tol(
        "train weight grad",
        &mem.grad(&bn.weight).unwrap(),
        &f("train_weight_grad"),
        1e-5,
        1e-5,
    );
    close_tol(
        "train bias grad",
        &mem.grad(&bn.bias).unwrap(),
        &f("train_bias_grad"),
        1e-5,
        1e-6,
    );
    let (mut rm, mut rv, mut nb) = ([0.0f32; 3], [0.0f32; 3], [0.0f32; 1]);
    mem.read(bn.running_mean, &mut rm).unwrap();
    mem.read(bn.running_var, &mut rv).unwrap();
    mem.read(bn.num_batches_tracked, &mut nb).unwrap();
    close("running_mean", &rm, &f("running_mean"));
    close("running_var", &rv, &f("running_var"));
    assert_eq!(nb[0], f("num_batches_tracked")[0]);

    bn.zero_grad(&mut mem).unwrap();
    bn.eval();
    {
        let g = Graph::new(&mut mem);
        let s3 = (1usize, Const::<3>, Const::<2>, Const::<3>);
        let x = g.from_slice(s3, &x3).requires_grad();
        let y = bn.forward(x);
        let mut out = [0.0f32; 18];
        y.read(&mut out).unwrap();
        close("eval y", &out, &f("eval_y"));
        (y * g.from_slice(s3, &w[..18])).sum().backward().unwrap();
        assert!(x.read_grad(&mut out).unwrap());
        close("eval x grad", &out, &f("eval_x_grad"));
    }
    close_tol(
        "eval weight grad",
        &mem.grad(&bn.weight).unwrap(),
        &f("eval_weight_grad"),
        1e-5,
        1e-6,
    );
    close(
        "eval bias grad",
        &mem.grad(&bn.bias).unwrap(),
        &f("eval_bias_grad"),
    );
    mem.read(bn.num_batches_tracked, &mut nb).unwrap();
    assert_eq!(nb, [2.0]);
    // The names PyTorch's state_dict has.
    let mut names = Vec::new();
    bn.named_parameters(&mut |p| names.push(p.name.to_string()));
    bn.named_buffers(&mut |b| names.push(b.name.to_string()));
    assert!(BN2D_FIXTURE.contains(
        r#""state_dict": [
  "weight",
  "bias",
  "running_mean",
  "running_var",
  "num_batches_tracked"
 ]"#
    ));
    assert_eq!(
        names,
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked"
        ]
    );
}

/// A training batch with one value per channel (`N·H·W == 1`) is PyTorch's
/// error; one sample of several positions is not.
#[test]
fn batch_norm_2d_one_value_per_channel_in_training_is_an_error() {
    use ember_nn_core::nn::{BatchNorm1d, BatchNorm2d, Forward};
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let bn = BatchNorm2d::<2>::new(&mut mem).unwrap();
    let bn1 = BatchNorm1d::<2>::new(&mut mem).unwrap();
    let g = Graph::new(&mut mem);
    let y = bn.forward(g.tensor([[[[1.0f32]], [[2.0]]]]));
    assert!(!y.is_valid());
    assert!(matches!(
        g.status(),
        Err(Error::InvalidArgument { what }) if what.contains("Expected more than 1 value per channel when training")
    ));
    let g = Graph::new(&mut mem);
    let y = bn.forward(g.tensor([[[[1.0f32, 3.0]], [[2.0, 2.0]]]]));
    let z = bn1.forward(g.tensor([[[1.0f32, 3.0], [2.0, 2.0]]]));
    g.status().unwrap();
    // BatchNorm1d on [N, C, L] normalises as BatchNorm2d on [N, C, 1, L].
    let (y, z) = (y.to_array().unwrap(), z.to_array().unwrap());
    assert_eq!(y[0][0][0], z[0][0]);
    assert_eq!(y[0][1][0], z[0][1]);
    close("one sample", &z[0][0], &[-0.999995, 0.999995]);
}

/// A derived model names the layer's parameters and buffers as PyTorch's
/// `state_dict()` does, the optimizer sees only the parameters, and
/// `train_floats` counts the buffers.
#[test]
fn batch_norm_1d_names_and_budget() {
    use ember_nn_core::nn::{self, BatchNorm1d, Build, Footprint, Linear, Module, ReLU};
    #[derive(nn::Module)]
    struct Net {
        fc: Linear<4, 3>,
        // PyTorch's `nn.BatchNorm1d(3, momentum=0.01)`.
        #[module(init = nn::BatchNormConfig::new().with_momentum(0.01).init(mem))]
        bn: BatchNorm1d<3>,
        act: ReLU,
        out: (Linear<3, 3>, BatchNorm1d<3>),
    }
    let mut buf = buffer();
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(net.bn.config().momentum, 0.01);
    assert_eq!(net.out.1.config(), nn::BatchNormConfig::default());
    let mut params = Vec::new();
    net.named_parameters(&mut |p| params.push(p.name.to_string()));
    assert_eq!(
        params,
        [
            "fc.weight",
            "fc.bias",
            "bn.weight",
            "bn.bias",
            "out.0.weight",
            "out.0.bias",
            "out.1.weight",
            "out.1.bias"
        ]
    );
    let mut buffers = Vec::new();
    net.named_buffers(&mut |b| buffers.push((b.name.to_string(), b.dims.as_slice().to_vec())));
    assert_eq!(
        buffers,
        [
            ("bn.running_mean".to_string(), vec![3]),
            ("bn.running_var".to_string(), vec![3]),
            ("bn.num_batches_tracked".to_string(), vec![]),
            ("out.1.running_mean".to_string(), vec![3]),
            ("out.1.running_var".to_string(), vec![3]),
            ("out.1.num_batches_tracked".to_string(), vec![]),
        ]
    );
    assert_eq!(Net::PARAMS, 4 * 3 + 3 + 6 + 3 * 3 + 3 + 6);
    assert_eq!(Net::BUFFERS, 2 * 7);
    assert_eq!(
        nn::train_floats::<Net>(8, nn::loss::Loss::Mse, nn::Rule::sgd())
            - nn::train_floats::<(Linear<4, 3>, ReLU, Linear<3, 3>)>(
                8,
                nn::loss::Loss::Mse,
                nn::Rule::sgd()
            ),
        // Two layers' γ, β and gradients, buffers, and a [8, 3] value and gradient each.
        2 * (2 * 6 + 7 + 2 * 8 * 3)
    );
    assert!(nn::summary(&net).to_string().contains(
        "(bn): BatchNorm1d(3, eps=1e-05, momentum=0.01, affine=True, track_running_stats=True)"
    ));
}

// ============================================================ Regression losses

/// `HuberLoss` (deltas 1, 0.75 and 0.3), `L1Loss` and `MSELoss`, mean and
/// sum, with their gradients, as PyTorch computes them
/// (`tests/tests/data/torch_losses.json`, `scripts/torch-fixtures.py
/// losses`): differences exactly at the delta take the quadratic side's
/// slope (the same value: the loss is smooth there), and a difference of 0
/// has a zero L1 gradient.
#[test]
fn regression_losses_match_pytorch() {
    use ember_nn_core::nn::loss::{huber, l1, mse, Reduction};
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("data/torch_losses.json")).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let pred: [f32; 8] = floats(&fixture["pred"]).try_into().unwrap();
    let target: [f32; 8] = floats(&fixture["target"]).try_into().unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let mut buf = buffer();
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let g = Graph::new(&mut mem);
        let p = g.tensor(pred).requires_grad();
        let t = g.tensor(target);
        let r = match case["reduction"].as_str().unwrap() {
            "mean" => Reduction::Mean,
            _ => Reduction::Sum,
        };
        let loss = match case["loss"].as_str().unwrap() {
            "huber" => huber(p, t, case["delta"].as_f64().unwrap() as f32, r),
            "l1" => l1(p, t, r),
            _ => mse(p, t, r),
        };
        let value = loss.item().unwrap();
        let want = case["value"].as_f64().unwrap() as f32;
        assert!(
            (value - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{case}: {value}"
        );
        loss.backward().unwrap();
        let grad = p.grad().unwrap().unwrap();
        for (k, (&got, want)) in grad.iter().zip(floats(&case["grad"])).enumerate() {
            assert!((got - want).abs() <= 1e-6, "{case}: grad {k} is {got}");
        }
    }
}
