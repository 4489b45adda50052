//! Broadcasting between shapes, as PyTorch does it: the shapes are aligned
//! on their last dimension, and each pair of sizes must be equal or one of
//! them 1 (a missing leading dimension counts as 1).
//!
//! The result's *type*: between shapes of different ranks it is the
//! higher-rank operand's shape; between shapes of the same rank each
//! dimension is compile-time where both operands' are ([`Unify`]). Sizes
//! are checked at run time, and between compile-time sizes at compile time.

use super::{Const, Dim, Shape, MAX_RANK};

/// The dimension type two dimensions broadcast to. Between two compile-time
/// sizes it is the left one's, which must equal the right one or the right
/// one must be 1 (checked when compiling: a compile-time 1 on the left
/// cannot become the right's size in the type; put the wider operand on the
/// left or use [`expand_to`](crate::Tensor::expand_to)). Any run-time size
/// makes it run-time, since a run-time 1 may broadcast to the other size.
pub trait Unify<R: Dim>: Dim {
    /// The result's dimension type.
    type Output: Dim;
}

impl Unify<usize> for usize {
    type Output = usize;
}
impl<const N: usize> Unify<Const<N>> for usize {
    type Output = usize;
}
impl<const N: usize> Unify<usize> for Const<N> {
    type Output = usize;
}
impl<const A: usize, const B: usize> Unify<Const<B>> for Const<A> {
    type Output = Const<A>;
}

/// Shapes that broadcast with `R`; `Output` is the result's shape type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` and `{R}` do not broadcast",
    note = "shapes broadcast when their ranks differ, or when each pair of dimension types unifies"
)]
pub trait BroadcastShape<R: Shape>: Shape {
    /// The result's shape type.
    type Output: Shape;
}

/// The broadcast sizes of `a` and `b` (PyTorch's rule), or `None` when a
/// pair of sizes differs and neither is 1.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<([usize; MAX_RANK], usize)> {
    let rank = a.len().max(b.len());
    let mut out = [1usize; MAX_RANK];
    for k in 0..rank {
        // k counts from the last dimension.
        let x = if k < a.len() { a[a.len() - 1 - k] } else { 1 };
        let y = if k < b.len() { b[b.len() - 1 - k] } else { 1 };
        out[rank - 1 - k] = match (x, y) {
            _ if x == y => x,
            (1, _) => y,
            (_, 1) => x,
            _ => return None,
        };
    }
    Some((out, rank))
}

impl BroadcastShape<()> for () {
    type Output = ();
}

impl<L0: Dim + Unify<R0>, R0: Dim> BroadcastShape<(R0,)> for (L0,) {
    type Output = (<L0 as Unify<R0>>::Output,);
}

impl<L0: Dim + Unify<R0>, L1: Dim + Unify<R1>, R0: Dim, R1: Dim> BroadcastShape<(R0, R1)>
    for (L0, L1)
{
    type Output = (<L0 as Unify<R0>>::Output, <L1 as Unify<R1>>::Output);
}

impl<L0: Dim + Unify<R0>, L1: Dim + Unify<R1>, L2: Dim + Unify<R2>, R0: Dim, R1: Dim, R2: Dim>
    BroadcastShape<(R0, R1, R2)> for (L0, L1, L2)
{
    type Output = (
        <L0 as Unify<R0>>::Output,
        <L1 as Unify<R1>>::Output,
        <L2 as Unify<R2>>::Output,
    );
}

impl<
        L0: Dim + Unify<R0>,
        L1: Dim + Unify<R1>,
        L2: Dim + Unify<R2>,
        L3: Dim + Unify<R3>,
        R0: Dim,
        R1: Dim,
        R2: Dim,
        R3: Dim,
    > BroadcastShape<(R0, R1, R2, R3)> for (L0, L1, L2, L3)
{
    type Output = (
        <L0 as Unify<R0>>::Output,
        <L1 as Unify<R1>>::Output,
        <L2 as Unify<R2>>::Output,
        <L3 as Unify<R3>>::Output,
    );
}

impl<R0: Dim> BroadcastShape<(R0,)> for () {
    type Output = (R0,);
}

impl<R0: Dim, R1: Dim> BroadcastShape<(R0, R1)> for () {
    type Output = (R0, R1);
}

impl<R0: Dim, R1: Dim, R2: Dim> BroadcastShape<(R0, R1, R2)> for () {
    type Output = (R0, R1, R2);
}

impl<R0: Dim, R1: Dim, R2: Dim, R3: Dim> BroadcastShape<(R0, R1, R2, R3)> for () {
    type Output = (R0, R1, R2, R3);
}

impl<L0: Dim> BroadcastShape<()> for (L0,) {
    type Output = (L0,);
}

impl<L0: Dim, R0: Dim, R1: Dim> BroadcastShape<(R0, R1)> for (L0,) {
    type Output = (R0, R1);
}

impl<L0: Dim, R0: Dim, R1: Dim, R2: Dim> BroadcastShape<(R0, R1, R2)> for (L0,) {
    type Output = (R0, R1, R2);
}

impl<L0: Dim, R0: Dim, R1: Dim, R2: Dim, R3: Dim> BroadcastShape<(R0, R1, R2, R3)> for (L0,) {
    type Output = (R0, R1, R2, R3);
}

impl<L0: Dim, L1: Dim> BroadcastShape<()> for (L0, L1) {
    type Output = (L0, L1);
}

impl<L0: Dim, L1: Dim, R0: Dim> BroadcastShape<(R0,)> for (L0, L1) {
    type Output = (L0, L1);
}

impl<L0: Dim, L1: Dim, R0: Dim, R1: Dim, R2: Dim> BroadcastShape<(R0, R1, R2)> for (L0, L1) {
    type Output = (R0, R1, R2);
}

impl<L0: Dim, L1: Dim, R0: Dim, R1: Dim, R2: Dim, R3: Dim> BroadcastShape<(R0, R1, R2, R3)>
    for (L0, L1)
{
    type Output = (R0, R1, R2, R3);
}

impl<L0: Dim, L1: Dim, L2: Dim> BroadcastShape<()> for (L0, L1, L2) {
    type Output = (L0, L1, L2);
}

impl<L0: Dim, L1: Dim, L2: Dim, R0: Dim> BroadcastShape<(R0,)> for (L0, L1, L2) {
    type Output = (L0, L1, L2);
}

impl<L0: Dim, L1: Dim, L2: Dim, R0: Dim, R1: Dim> BroadcastShape<(R0, R1)> for (L0, L1, L2) {
    type Output = (L0, L1, L2);
}

impl<L0: Dim, L1: Dim, L2: Dim, R0: Dim, R1: Dim, R2: Dim, R3: Dim> BroadcastShape<(R0, R1, R2, R3)>
    for (L0, L1, L2)
{
    type Output = (R0, R1, R2, R3);
}

impl<L0: Dim, L1: Dim, L2: Dim, L3: Dim> BroadcastShape<()> for (L0, L1, L2, L3) {
    type Output = (L0, L1, L2, L3);
}

impl<L0: Dim, L1: Dim, L2: Dim, L3: Dim, R0: Dim> BroadcastShape<(R0,)> for (L0, L1, L2, L3) {
    type Output = (L0, L1, L2, L3);
}

impl<L0: Dim, L1: Dim, L2: Dim, L3: Dim, R0: Dim, R1: Dim> BroadcastShape<(R0, R1)>
    for (L0, L1, L2, L3)
{
    type Output = (L0, L1, L2, L3);
}

impl<L0: Dim, L1: Dim, L2: Dim, L3: Dim, R0: Dim, R1: Dim, R2: Dim> BroadcastShape<(R0, R1, R2)>
    for (L0, L1, L2, L3)
{
    type Output = (L0, L1, L2, L3);
}
