//! Broadcasting (PyTorch's rules): [`expand_to`](Tensor::expand_to) and
//! [`expand_as`](Tensor::expand_as) repeat a tensor over the sizes where it
//! has 1 (or lacks a leading dimension), [`broadcast_zip`](Tensor::broadcast_zip)
//! expands both operands of an elementwise op to their common shape, and the
//! `+ - * /` operators broadcast between tensors of different ranks, on
//! either side. No data is repeated that the result does not hold: each
//! expansion is one copy, and its gradient is a sum.

use crate::backend::{Acc, AxisDims, Backend};
use crate::error::Error;
use crate::graph::Op;
use crate::ops::zip::Zip;
use crate::shape::{broadcast_dims, check, BroadcastShape, Dim, Shape, MAX_RANK};
use crate::tensor::{invalid, Tensor};
use core::ops::{Add, Div, Mul, Sub};

/// The shape of an intermediate expansion (when a tensor is repeated along
/// two separate runs of axes).
type Between = (usize, usize, usize, usize);

impl<'t, S: Shape, B: Backend> Tensor<'t, S, B> {
    /// Repeats this tensor to `shape` (PyTorch's `expand`): aligned on the
    /// last dimension, each size must equal the target's or be 1, and
    /// missing leading dimensions are added. The gradient sums over the
    /// repeats.
    ///
    /// ```
    /// use ember_nn_core::prelude::*;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let col = g.tensor([[1.0f32], [2.0]]); // [2, 1]
    /// let m = col.expand_to((Const::<2>, Const::<3>));
    /// assert_eq!(m.to_array()?, [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]);
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    pub fn expand_to<O: Shape>(self, shape: O) -> Tensor<'t, O, B> {
        let (x, o) = (self.dims(), shape.dims_slice());
        let (m, r) = (x.rank, o.rank);
        let fail = |t: &Self| {
            invalid(
                t.tape,
                shape,
                Error::Shape {
                    op: "expand: each size must equal the target's or be 1",
                    expected: o,
                    found: x,
                },
            )
        };
        if m > r {
            return fail(&self);
        }
        let mut cur = [1usize; MAX_RANK];
        cur[r - m..r].copy_from_slice(x.as_slice());
        let od = o.as_slice();
        if (0..r).any(|i| cur[i] != od[i] && cur[i] != 1) {
            return fail(&self);
        }
        // Runs of consecutive axes to repeat: each is one copy.
        let mut runs = [(0usize, 0usize); MAX_RANK];
        let mut count = 0;
        let mut i = 0;
        while i < r {
            compact_loop!();
            if cur[i] != od[i] {
                let start = i;
                while i < r && cur[i] != od[i] {
                    compact_loop!();
                    i += 1;
                }
                runs[count] = (start, i);
                count += 1;
            } else {
                i += 1;
            }
        }
        match count {
            // Nothing to repeat: the same data under the target's type
            // (the sizes are equal; only leading 1s may be added).
            0 => {
                let id = self.tape.record_alias(
                    Op::Reshape,
                    o,
                    self.id,
                    crate::ops::view::reshape_backward::<B>,
                );
                Tensor::from_id(self.tape, id, shape)
            }
            1 => self.expand_run(&mut cur, od, runs[0], shape),
            _ => {
                // At most two runs in four dimensions: through one
                // intermediate of run-time shape.
                let next = after(&cur, od, runs[0]);
                let mut t = self.expand_run(&mut cur, od, runs[0], next);
                for &run in &runs[1..count - 1] {
                    compact_loop!();
                    let next = after(&cur, od, run);
                    t = t.expand_run(&mut cur, od, run, next);
                }
                t.expand_run(&mut cur, od, runs[count - 1], shape)
            }
        }
    }

    /// Repeats this tensor to the shape of `other` (PyTorch's `expand_as`);
    /// see [`expand_to`](Self::expand_to). Also how to combine shapes whose
    /// sizes agree but whose types differ: `b.expand_as(&a) + a`.
    pub fn expand_as<O: Shape>(self, other: &Tensor<'t, O, B>) -> Tensor<'t, O, B> {
        self.expand_to(other.shape)
    }

    /// One copy repeating axes `run` of `cur` to the sizes `od` has there.
    fn expand_run<O: Shape>(
        self,
        cur: &mut [usize; MAX_RANK],
        od: &[usize],
        run: (usize, usize),
        shape: O,
    ) -> Tensor<'t, O, B> {
        let r = od.len();
        let (s, e) = run;
        let dims = AxisDims {
            outer: cur[..s].iter().product(),
            len: od[s..e].iter().product(),
            inner: cur[e..r].iter().product(),
        };
        cur[s..e].copy_from_slice(&od[s..e]);
        let back = crate::ops::reduce::expand_backward::<B>;
        self.unary_op(Op::Expand { dims }, shape, back, move |be, buf, y, ins| {
            be.expand(buf, ins[0], y, dims, Acc::Set)
        })
    }

    /// Applies the elementwise `f` to `self` and `rhs` broadcast to their
    /// common shape (PyTorch's broadcasting: shapes aligned on the last
    /// dimension, each pair of sizes equal or one of them 1). The result's
    /// type is the higher-rank operand's shape, or between equal ranks the
    /// dimension types unified ([`Unify`](crate::shape::Unify): compile-time
    /// where both are).
    ///
    /// ```
    /// use ember_nn_core::prelude::*;
    /// use ember_nn_core::ops::zip::Zip;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let col = g.from_slice((2usize, 1usize), &[1.0, 2.0]); // [2, 1]
    /// let row = g.tensor([[10.0f32, 20.0, 30.0]]); // [1, 3]
    /// let m = col.broadcast_zip(row, Zip::Add); // (usize, usize) = [2, 3]
    /// let mut out = [0.0f32; 6];
    /// m.read(&mut out)?;
    /// assert_eq!(out, [11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    ///
    /// Between compile-time sizes, sizes that do not broadcast, or a 1 on
    /// the left where the right is wider (the result's type takes the left
    /// one), do not compile:
    ///
    /// ```compile_fail,E0080
    /// use ember_nn_core::prelude::*;
    /// use ember_nn_core::ops::zip::Zip;
    /// let mut buf = [0.0f32; 64];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let g = Graph::new(&mut mem);
    /// let col = g.tensor([[1.0f32], [2.0]]); // Rank2<2, 1>
    /// let row = g.tensor([[10.0f32, 20.0, 30.0]]); // Rank2<1, 3>
    /// let _ = col.broadcast_zip(row, Zip::Add);
    /// ```
    pub fn broadcast_zip<S2: Shape>(
        self,
        rhs: Tensor<'t, S2, B>,
        f: Zip,
    ) -> Tensor<'t, S::Output, B>
    where
        S: BroadcastShape<S2>,
    {
        let () = check::Broadcast::<S, S2, S::Output>::OK;
        let (a, b) = (self.dims(), rhs.dims());
        let out = broadcast_dims(a.as_slice(), b.as_slice())
            .and_then(|(d, rank)| S::Output::from_dims(&d[..rank]));
        let Some(out) = out else {
            return invalid(
                self.tape,
                S::Output::placeholder(),
                Error::Shape {
                    op: "broadcast: a pair of sizes differs and neither is 1",
                    expected: a,
                    found: b,
                },
            );
        };
        if let Err(e) = self.check_same_tape(&rhs) {
            return invalid(self.tape, out, e);
        }
        self.expand_to(out).zip(rhs.expand_to(out), f)
    }
}

/// The run-time shape (rank 4, padded with trailing 1s, which change no
/// layout) of `cur` after repeating the axes `run` to `od`'s sizes.
fn after(cur: &[usize; MAX_RANK], od: &[usize], run: (usize, usize)) -> Between {
    let mut d = *cur;
    d[run.0..run.1].copy_from_slice(&od[run.0..run.1]);
    (d[0], d[1], d[2], d[3])
}

/// `Tensor<L> op Tensor<R>` for shapes of different ranks, on either side:
/// broadcasts (see [`Tensor::broadcast_zip`]).
macro_rules! broadcast_operators {
    ($(($($l:ident),*) ($($r:ident),*);)*) => {$(
        broadcast_operators!(@one Add, add, Zip::Add; ($($l),*) ($($r),*));
        broadcast_operators!(@one Sub, sub, Zip::Sub; ($($l),*) ($($r),*));
        broadcast_operators!(@one Mul, mul, Zip::Mul; ($($l),*) ($($r),*));
        broadcast_operators!(@one Div, div, Zip::Div; ($($l),*) ($($r),*));
    )*};
    (@one $tr:ident, $method:ident, $zip:expr; ($($l:ident),*) ($($r:ident),*)) => {
        impl<'t, $($l: Dim,)* $($r: Dim,)* Bk: Backend> $tr<Tensor<'t, ($($r,)*), Bk>>
            for Tensor<'t, ($($l,)*), Bk>
        {
            type Output = Tensor<'t, <($($l,)*) as BroadcastShape<($($r,)*)>>::Output, Bk>;
            fn $method(self, rhs: Tensor<'t, ($($r,)*), Bk>) -> Self::Output {
                self.broadcast_zip(rhs, $zip)
            }
        }
    };
}
broadcast_operators! {
    () (R0);
    () (R0, R1);
    () (R0, R1, R2);
    () (R0, R1, R2, R3);
    (L0) ();
    (L0) (R0, R1);
    (L0) (R0, R1, R2);
    (L0) (R0, R1, R2, R3);
    (L0, L1) ();
    (L0, L1) (R0);
    (L0, L1) (R0, R1, R2);
    (L0, L1) (R0, R1, R2, R3);
    (L0, L1, L2) ();
    (L0, L1, L2) (R0);
    (L0, L1, L2) (R0, R1);
    (L0, L1, L2) (R0, R1, R2, R3);
    (L0, L1, L2, L3) ();
    (L0, L1, L2, L3) (R0);
    (L0, L1, L2, L3) (R0, R1);
    (L0, L1, L2, L3) (R0, R1, R2);
}
