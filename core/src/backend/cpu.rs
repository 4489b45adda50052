//! The portable scalar CPU backend: no threads, no SIMD intrinsics, no
//! allocation. It runs on a Cortex-M0 and is the reference for every other backend.

use super::{kernels, HostKernels, MapFn};

/// The portable single-threaded CPU backend; tensors live in a `[f32]`.
/// Its kernels are [`HostKernels`]' defaults (and, for the elementwise
/// functions known at compile time, [`kernels`]' typed loops), and its operand checks those
/// of the host layer ([`host`](super::host)), which `host_backend!` makes
/// its [`Backend`](super::Backend) implementation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

impl HostKernels for Cpu {
    // The elementwise functions known at compile time get their own loops,
    // so that a program links the functions it uses and no others.
    #[inline]
    fn map_fn<F: MapFn>(&self, f: F, x: &[f32], y: &mut [f32]) {
        kernels::map_fn(f, x, y);
    }
    #[inline]
    fn map_backward_fn<F: MapFn>(&self, f: F, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        kernels::map_backward_fn(f, x, y, dy, dx);
    }
    #[inline]
    fn bias_act_fn<F: MapFn>(&self, f: F, bias: &[f32], y: &mut [f32]) {
        kernels::bias_act_fn(f, bias, y);
    }
    #[inline]
    fn act_backward_fn<F: MapFn>(&self, f: F, y: &[f32], dy: &mut [f32]) {
        kernels::act_backward_fn(f, y, dy);
    }
}

crate::host_backend!(Cpu);

#[cfg(test)]
mod tests {
    use super::super::check::split;
    use super::super::{kernels, Acc, Span};

    #[test]
    fn split_rejects_overlap_and_out_of_bounds() {
        let mut buf = [0.0f32; 8];
        assert!(split(&mut buf, [Span::new(0, 4)], [Span::new(2, 4)]).is_err());
        assert!(split(&mut buf, [Span::new(0, 4)], [Span::new(6, 4)]).is_err());
        assert!(split(&mut buf, [], [Span::new(0, 4), Span::new(3, 2)]).is_err());
        let ([a, b], [c]) = split(
            &mut buf,
            [Span::new(0, 4), Span::new(2, 2)],
            [Span::new(4, 4)],
        )
        .unwrap();
        assert_eq!((a.len(), b.len(), c.len()), (4, 2, 4));
    }

    #[test]
    fn gemm_all_transpose_combinations_agree() {
        // a = [[1,2,3],[4,5,6]] (2x3), b = [[1,0],[0,1],[1,1]] (3x2) -> [[4,5],[10,11]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let at = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let bt = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            compact_loop!();
            let mut c = [0.0; 4];
            let aa: &[f32] = if ta { &at } else { &a };
            let bb: &[f32] = if tb { &bt } else { &b };
            kernels::gemm(2, 2, 3, aa, ta, bb, tb, &mut c, Acc::Set);
            assert_eq!(c, [4.0, 5.0, 10.0, 11.0], "ta={ta} tb={tb}");
        }
    }
}
