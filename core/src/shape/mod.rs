//! Shapes checked at compile time, with an optional run-time batch dimension.
//!
//! A shape is a tuple of up to four dimensions. Each dimension is either
//! [`Const<N>`], known to the compiler, or `usize`, known only at run time (the
//! batch dimension on the host, for example). Operations that combine tensors
//! name their dimensions in their signatures, so that a mismatch between two
//! `Const` dimensions is a type error:
//!
//! ```compile_fail,E0308
//! use ember_nn_core::prelude::*;
//! let mut buf = [0.0f32; 64];
//! let mut mem = Memory::new(&Cpu, &mut buf[..]);
//! let g = Graph::new(&mut mem);
//! let a = g.tensor([[1.0f32, 2.0, 3.0]]); // [1, 3]
//! let b = g.tensor([[1.0f32, 2.0]]);      // [1, 2]
//! let _ = a + b; // error: [1, 3] + [1, 2]
//! ```
//!
//! Checks that need arithmetic on dimensions (a reshape keeps the element
//! count, a concatenation adds two lengths) are evaluated as constants when the
//! generic code is instantiated, which stable Rust allows without
//! `generic_const_exprs`: the program still fails to compile. Where a dimension
//! is a run-time `usize`, the same check runs at run time and reports
//! [`Error::Shape`](crate::Error::Shape).

use core::fmt::Debug;

pub mod broadcast;
pub use broadcast::{broadcast_dims, BroadcastShape, Unify};

/// Highest rank supported.
pub const MAX_RANK: usize = 4;

/// One dimension of a shape: [`Const<N>`] at compile time or `usize` at run time.
pub trait Dim: Copy + Debug + PartialEq + Send + Sync + 'static {
    /// The size when it is known at compile time.
    const STATIC: Option<usize>;
    /// The size.
    fn size(&self) -> usize;
    /// Builds the dimension from a size, if the size is allowed.
    fn from_size(n: usize) -> Option<Self>;
    /// The compile-time size, or 0 for a run-time dimension (the shape of an
    /// invalid tensor whose size could not be worked out).
    fn placeholder() -> Self;
}

/// A dimension whose size `N` is part of the type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Const<const N: usize>;

impl<const N: usize> Dim for Const<N> {
    const STATIC: Option<usize> = Some(N);
    #[inline]
    fn size(&self) -> usize {
        N
    }
    #[inline]
    fn from_size(n: usize) -> Option<Self> {
        (n == N).then_some(Const)
    }
    fn placeholder() -> Self {
        Const
    }
}

impl Dim for usize {
    const STATIC: Option<usize> = None;
    #[inline]
    fn size(&self) -> usize {
        *self
    }
    #[inline]
    fn from_size(n: usize) -> Option<Self> {
        Some(n)
    }
    fn placeholder() -> Self {
        0
    }
}

/// A tensor shape: `()`, `(D0,)`, `(D0, D1)`, `(D0, D1, D2)` or `(D0, D1, D2, D3)`.
pub trait Shape: Copy + Debug + PartialEq + Send + Sync + 'static {
    /// Number of dimensions.
    const RANK: usize;
    /// Each dimension's compile-time size (`None` for a run-time dimension);
    /// entries past `RANK` are `Some(1)`.
    const STATIC_DIMS: [Option<usize>; MAX_RANK];
    /// The sizes, padded with 1 past `RANK`.
    fn dims(&self) -> [usize; MAX_RANK];
    /// Builds the shape from sizes, if every compile-time dimension agrees.
    fn from_dims(dims: &[usize]) -> Option<Self>;
    /// Compile-time sizes, 0 for run-time dimensions.
    fn placeholder() -> Self;
    /// Number of elements.
    #[inline]
    fn numel(&self) -> usize {
        self.dims().iter().product()
    }
    /// The sizes as a slice of length `RANK`.
    fn dims_slice(&self) -> Dims {
        Dims {
            dims: self.dims(),
            rank: Self::RANK,
        }
    }
}

/// The sizes of a shape, as a value that prints like `[2, 3]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Sizes, padded with 1 past `rank`.
    pub dims: [usize; MAX_RANK],
    /// Number of meaningful entries.
    pub rank: usize,
}

impl Dims {
    /// The meaningful sizes.
    pub fn as_slice(&self) -> &[usize] {
        &self.dims[..self.rank]
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.as_slice().iter().product()
    }
}

impl Debug for Dims {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Dims {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=[?]}", self.as_slice())
    }
}

/// A shape made only of [`Const`] dimensions: its size is a constant and it has
/// a matching nested Rust array type.
pub trait ConstShape: Shape + Default {
    /// Number of elements.
    const NUMEL: usize;
    /// The nested array type (`f32`, `[f32; A]`, `[[f32; B]; A]`, ...).
    type Array: Copy + Debug + PartialEq + Send + Sync + 'static;
    /// A zero-filled array.
    fn zeros_array() -> Self::Array;
    /// The array's elements in row-major order.
    fn flat(a: &Self::Array) -> &[f32];
    /// The array's elements in row-major order, mutably.
    fn flat_mut(a: &mut Self::Array) -> &mut [f32];
}

/// Rank 0: a scalar.
pub type Rank0 = ();
/// Rank 1 with a compile-time length.
pub type Rank1<const A: usize> = (Const<A>,);
/// Rank 2 with compile-time sizes.
pub type Rank2<const A: usize, const B: usize> = (Const<A>, Const<B>);
/// Rank 3 with compile-time sizes.
pub type Rank3<const A: usize, const B: usize, const C: usize> = (Const<A>, Const<B>, Const<C>);
/// Rank 4 with compile-time sizes.
pub type Rank4<const A: usize, const B: usize, const C: usize, const D: usize> =
    (Const<A>, Const<B>, Const<C>, Const<D>);
/// A batch of `N`-feature rows whose row count is known at run time.
pub type Batch<const N: usize> = (usize, Const<N>);

impl Shape for () {
    const RANK: usize = 0;
    const STATIC_DIMS: [Option<usize>; MAX_RANK] = [Some(1); MAX_RANK];
    #[inline]
    fn dims(&self) -> [usize; MAX_RANK] {
        [1; MAX_RANK]
    }
    fn from_dims(dims: &[usize]) -> Option<Self> {
        dims.is_empty().then_some(())
    }
    fn placeholder() -> Self {}
}

impl ConstShape for () {
    const NUMEL: usize = 1;
    type Array = f32;
    fn zeros_array() -> f32 {
        0.0
    }
    fn flat(a: &f32) -> &[f32] {
        core::slice::from_ref(a)
    }
    fn flat_mut(a: &mut f32) -> &mut [f32] {
        core::slice::from_mut(a)
    }
}

macro_rules! impl_shape {
    ($rank:literal; $($d:ident $i:tt),+) => {
        impl<$($d: Dim),+> Shape for ($($d,)+) {
            const RANK: usize = $rank;
            const STATIC_DIMS: [Option<usize>; MAX_RANK] = {
                let mut s = [Some(1); MAX_RANK];
                $(s[$i] = $d::STATIC;)+
                s
            };
            #[inline]
            fn dims(&self) -> [usize; MAX_RANK] {
                let mut d = [1; MAX_RANK];
                $(d[$i] = self.$i.size();)+
                d
            }
            fn from_dims(dims: &[usize]) -> Option<Self> {
                if dims.len() != $rank {
                    return None;
                }
                Some(($($d::from_size(dims[$i])?,)+))
            }
            fn placeholder() -> Self {
                ($($d::placeholder(),)+)
            }
        }
    };
}
impl_shape!(1; D0 0);
impl_shape!(2; D0 0, D1 1);
impl_shape!(3; D0 0, D1 1, D2 2);
impl_shape!(4; D0 0, D1 1, D2 2, D3 3);

impl<const A: usize> ConstShape for (Const<A>,) {
    const NUMEL: usize = A;
    type Array = [f32; A];
    fn zeros_array() -> Self::Array {
        [0.0; A]
    }
    fn flat(a: &Self::Array) -> &[f32] {
        a
    }
    fn flat_mut(a: &mut Self::Array) -> &mut [f32] {
        a
    }
}
impl<const A: usize, const B: usize> ConstShape for (Const<A>, Const<B>) {
    const NUMEL: usize = A * B;
    type Array = [[f32; B]; A];
    fn zeros_array() -> Self::Array {
        [[0.0; B]; A]
    }
    fn flat(a: &Self::Array) -> &[f32] {
        a.as_flattened()
    }
    fn flat_mut(a: &mut Self::Array) -> &mut [f32] {
        a.as_flattened_mut()
    }
}
impl<const A: usize, const B: usize, const C: usize> ConstShape for (Const<A>, Const<B>, Const<C>) {
    const NUMEL: usize = A * B * C;
    type Array = [[[f32; C]; B]; A];
    fn zeros_array() -> Self::Array {
        [[[0.0; C]; B]; A]
    }
    fn flat(a: &Self::Array) -> &[f32] {
        a.as_flattened().as_flattened()
    }
    fn flat_mut(a: &mut Self::Array) -> &mut [f32] {
        a.as_flattened_mut().as_flattened_mut()
    }
}
impl<const A: usize, const B: usize, const C: usize, const D: usize> ConstShape
    for (Const<A>, Const<B>, Const<C>, Const<D>)
{
    const NUMEL: usize = A * B * C * D;
    type Array = [[[[f32; D]; C]; B]; A];
    fn zeros_array() -> Self::Array {
        [[[[0.0; D]; C]; B]; A]
    }
    fn flat(a: &Self::Array) -> &[f32] {
        a.as_flattened().as_flattened().as_flattened()
    }
    fn flat_mut(a: &mut Self::Array) -> &mut [f32] {
        a.as_flattened_mut().as_flattened_mut().as_flattened_mut()
    }
}

/// Maps a nested `f32` array type to its shape, so `g.tensor([[1.0, 2.0]])` infers `Rank2<1, 2>`.
pub trait ArrayShape: Copy {
    /// The shape of the array.
    type Shape: ConstShape<Array = Self>;
}
impl ArrayShape for f32 {
    type Shape = ();
}
impl<const A: usize> ArrayShape for [f32; A] {
    type Shape = Rank1<A>;
}
impl<const A: usize, const B: usize> ArrayShape for [[f32; B]; A] {
    type Shape = Rank2<A, B>;
}
impl<const A: usize, const B: usize, const C: usize> ArrayShape for [[[f32; C]; B]; A] {
    type Shape = Rank3<A, B, C>;
}
impl<const A: usize, const B: usize, const C: usize, const D: usize> ArrayShape
    for [[[[f32; D]; C]; B]; A]
{
    type Shape = Rank4<A, B, C, D>;
}

/// Shapes that have axis `AX`; `Removed` is the shape without it (what a
/// reduction along `AX` returns, and what a broadcast along `AX` starts from).
pub trait HasAxis<const AX: usize>: Shape {
    /// The shape with axis `AX` removed.
    type Removed: Shape;
    /// The shape with axis `AX` a run-time dimension (`usize`): what a
    /// concatenation along `AX` returns, since stable Rust cannot add two
    /// compile-time sizes in a type.
    type Runtime: Shape;
    /// The shape with axis `AX` removed.
    fn remove(&self) -> Self::Removed;
}

/// Shapes into which a new dimension of size 1 can be inserted at `AX`.
pub trait InsertAxis<const AX: usize>: Shape {
    /// The shape with `Const<1>` inserted at `AX`.
    type Inserted: Shape;
    /// The shape with `Const<1>` inserted at `AX`.
    fn insert(&self) -> Self::Inserted;
}

macro_rules! axis_impls {
    ($ax:literal; ($($d:ident),+); ($($keep:tt),*); ($($r:ident),*); ($($rt:ty),+)) => {
        impl<$($d: Dim),+> HasAxis<$ax> for ($($d,)+) {
            type Removed = ($($r,)*);
            type Runtime = ($($rt,)+);
            #[inline]
            #[allow(clippy::unused_unit)]
            fn remove(&self) -> Self::Removed {
                ($(self.$keep,)*)
            }
        }
    };
}
axis_impls!(0; (A); (); (); (usize));
axis_impls!(0; (A, B); (1); (B); (usize, B));
axis_impls!(1; (A, B); (0); (A); (A, usize));
axis_impls!(0; (A, B, C); (1, 2); (B, C); (usize, B, C));
axis_impls!(1; (A, B, C); (0, 2); (A, C); (A, usize, C));
axis_impls!(2; (A, B, C); (0, 1); (A, B); (A, B, usize));
axis_impls!(0; (A, B, C, D); (1, 2, 3); (B, C, D); (usize, B, C, D));
axis_impls!(1; (A, B, C, D); (0, 2, 3); (A, C, D); (A, usize, C, D));
axis_impls!(2; (A, B, C, D); (0, 1, 3); (A, B, D); (A, B, usize, D));
axis_impls!(3; (A, B, C, D); (0, 1, 2); (A, B, C); (A, B, C, usize));

macro_rules! insert_impls {
    ($ax:literal; ($($d:ident),*); ($($out:tt)*)) => {
        impl<$($d: Dim),*> InsertAxis<$ax> for ($($d,)*) {
            type Inserted = insert_impls!(@ty $($out)*);
            #[inline]
            #[allow(non_snake_case)]
            fn insert(&self) -> Self::Inserted {
                #[allow(unused_variables)]
                let ($($d,)*) = *self;
                insert_impls!(@val $($out)*)
            }
        }
    };
    (@ty $($x:ident),*) => { ($(insert_impls!(@one $x),)*) };
    (@val $($x:ident),*) => { ($(insert_impls!(@v $x),)*) };
    (@one ONE) => { Const<1> };
    (@one $x:ident) => { $x };
    (@v ONE) => { Const::<1> };
    (@v $x:ident) => { $x };
}
insert_impls!(0; (); (ONE));
insert_impls!(0; (A); (ONE, A));
insert_impls!(1; (A); (A, ONE));
insert_impls!(0; (A, B); (ONE, A, B));
insert_impls!(1; (A, B); (A, ONE, B));
insert_impls!(2; (A, B); (A, B, ONE));
insert_impls!(0; (A, B, C); (ONE, A, B, C));
insert_impls!(1; (A, B, C); (A, ONE, B, C));
insert_impls!(2; (A, B, C); (A, B, ONE, C));
insert_impls!(3; (A, B, C); (A, B, C, ONE));

/// Shapes of rank 2 or more, whose last two dimensions can be swapped.
pub trait Transpose: Shape {
    /// The shape with its last two dimensions swapped.
    type Transposed: Shape;
    /// The shape with its last two dimensions swapped.
    fn transposed(&self) -> Self::Transposed;
}
impl<A: Dim, B: Dim> Transpose for (A, B) {
    type Transposed = (B, A);
    fn transposed(&self) -> (B, A) {
        (self.1, self.0)
    }
}
impl<A: Dim, B: Dim, C: Dim> Transpose for (A, B, C) {
    type Transposed = (A, C, B);
    fn transposed(&self) -> (A, C, B) {
        (self.0, self.2, self.1)
    }
}
impl<A: Dim, B: Dim, C: Dim, D: Dim> Transpose for (A, B, C, D) {
    type Transposed = (A, B, D, C);
    fn transposed(&self) -> (A, B, D, C) {
        (self.0, self.1, self.3, self.2)
    }
}

/// Shapes that can be stacked: two tensors of shape `Self` give one of shape `Stacked`.
pub trait Stack: Shape {
    /// `(Const<2>, ...Self)`.
    type Stacked: Shape;
}
impl Stack for () {
    type Stacked = (Const<2>,);
}
impl<A: Dim> Stack for (A,) {
    type Stacked = (Const<2>, A);
}
impl<A: Dim, B: Dim> Stack for (A, B) {
    type Stacked = (Const<2>, A, B);
}
impl<A: Dim, B: Dim, C: Dim> Stack for (A, B, C) {
    type Stacked = (Const<2>, A, B, C);
}

/// Shapes of rank 1 or more, split into their first dimension and the rest.
pub trait HasFirst: Shape {
    /// The first dimension (the batch, in a batch of samples).
    type First: Dim;
    /// The first dimension.
    fn first(&self) -> Self::First;
}
impl<A: Dim> HasFirst for (A,) {
    type First = A;
    fn first(&self) -> A {
        self.0
    }
}
impl<A: Dim, B: Dim> HasFirst for (A, B) {
    type First = A;
    fn first(&self) -> A {
        self.0
    }
}
impl<A: Dim, B: Dim, C: Dim> HasFirst for (A, B, C) {
    type First = A;
    fn first(&self) -> A {
        self.0
    }
}
impl<A: Dim, B: Dim, C: Dim, D: Dim> HasFirst for (A, B, C, D) {
    type First = A;
    fn first(&self) -> A {
        self.0
    }
}

/// Compile-time checks on shapes, evaluated when generic code is instantiated.
pub(crate) mod check {
    use super::{Shape, MAX_RANK};
    use core::marker::PhantomData;

    const fn static_numel(d: [Option<usize>; MAX_RANK]) -> Option<usize> {
        let mut n = 1;
        let mut i = 0;
        while i < MAX_RANK {
            match d[i] {
                Some(x) => n *= x,
                None => return None,
            }
            i += 1;
        }
        Some(n)
    }

    /// `A` and `B` hold the same number of elements (when both are known).
    pub struct SameNumel<A, B>(PhantomData<(A, B)>);
    impl<A: Shape, B: Shape> SameNumel<A, B> {
        pub const OK: () = if let (Some(a), Some(b)) =
            (static_numel(A::STATIC_DIMS), static_numel(B::STATIC_DIMS))
        {
            assert!(
                a == b,
                "reshape: the shapes hold different numbers of elements"
            )
        };
    }

    /// `N` equals the product of the dimensions of `A` after the first (when known).
    pub struct RestNumel<A, const N: usize>(PhantomData<A>);
    impl<A: Shape, const N: usize> RestNumel<A, N> {
        pub const OK: () = {
            let mut d = A::STATIC_DIMS;
            d[0] = Some(1);
            if let Some(n) = static_numel(d) {
                assert!(
                    n == N,
                    "flatten: the flattened size differs from the product of the dimensions"
                );
            }
        };
    }

    /// `A` and `B` concatenate along `AX` into `O`.
    pub struct Concat<A, B, O, const AX: usize>(PhantomData<(A, B, O)>);
    impl<A: Shape, B: Shape, O: Shape, const AX: usize> Concat<A, B, O, AX> {
        pub const OK: () = {
            assert!(
                A::RANK == B::RANK && A::RANK == O::RANK,
                "concat: ranks differ"
            );
            assert!(AX < A::RANK, "concat: axis out of range");
            let (a, b, o) = (A::STATIC_DIMS, B::STATIC_DIMS, O::STATIC_DIMS);
            let mut i = 0;
            while i < MAX_RANK {
                if i == AX {
                    if let (Some(x), Some(y), Some(z)) = (a[i], b[i], o[i]) {
                        assert!(x + y == z, "concat: the output length along the axis is not the sum of the inputs'");
                    }
                } else {
                    if let (Some(x), Some(y)) = (a[i], b[i]) {
                        assert!(
                            x == y,
                            "concat: the inputs differ outside the concatenation axis"
                        );
                    }
                    if let (Some(x), Some(z)) = (a[i], o[i]) {
                        assert!(x == z, "concat: the output differs from the inputs outside the concatenation axis");
                    }
                }
                i += 1;
            }
        };
    }

    /// Axis `AX` of `A` has size 1 (when known).
    pub struct UnitAxis<A, const AX: usize>(PhantomData<A>);
    impl<A: Shape, const AX: usize> UnitAxis<A, AX> {
        pub const OK: () = {
            assert!(AX < A::RANK, "axis out of range for this shape");
            if let Some(n) = A::STATIC_DIMS[AX] {
                assert!(n == 1, "squeeze: the axis is not of size 1");
            }
        };
    }

    /// `A` and `B` broadcast into `O` (where the sizes are known): aligned
    /// on their last dimension, each pair equal or one of them 1, and `O`'s
    /// compile-time sizes those of the result.
    pub struct Broadcast<A, B, O>(PhantomData<(A, B, O)>);
    impl<A: Shape, B: Shape, O: Shape> Broadcast<A, B, O> {
        pub const OK: () = {
            let (a, b, o) = (A::STATIC_DIMS, B::STATIC_DIMS, O::STATIC_DIMS);
            let rank = O::RANK;
            let mut k = 0;
            while k < rank {
                let x = if k < A::RANK {
                    a[A::RANK - 1 - k]
                } else {
                    Some(1)
                };
                let y = if k < B::RANK {
                    b[B::RANK - 1 - k]
                } else {
                    Some(1)
                };
                if let (Some(x), Some(y)) = (x, y) {
                    assert!(
                        x == y || x == 1 || y == 1,
                        "broadcast: a pair of sizes differs and neither is 1"
                    );
                }
                if let Some(z) = o[rank - 1 - k] {
                    if let Some(x) = x {
                        assert!(x == z || x == 1, "broadcast: the result's type has size 1 where the left operand is wider: put the wider operand on the left, or expand_to the shape");
                    }
                    if let Some(y) = y {
                        assert!(y == z || y == 1, "broadcast: the result's type has size 1 where the right operand is wider: put the wider operand on the left, or expand_to the shape");
                    }
                }
                k += 1;
            }
        };
    }

    /// `AX` is an axis of `A`.
    pub struct Axis<A, const AX: usize>(PhantomData<A>);
    impl<A: Shape, const AX: usize> Axis<A, AX> {
        pub const OK: () = assert!(AX < A::RANK, "axis out of range for this shape");
    }
}
