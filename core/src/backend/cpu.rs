//! The portable scalar CPU backend: no threads, no SIMD intrinsics, no
//! allocation. It runs on a Cortex-M0 and is the reference for every other backend.

use super::HostKernels;

/// The portable single-threaded CPU backend; tensors live in a `[f32]`.
/// Its kernels are [`HostKernels`]' defaults, and its operand checks those
/// of the host layer ([`host`](super::host)), which `host_backend!` makes
/// its [`Backend`](super::Backend) implementation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu;

impl HostKernels for Cpu {}

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
            let mut c = [0.0; 4];
            let aa: &[f32] = if ta { &at } else { &a };
            let bb: &[f32] = if tb { &bt } else { &b };
            kernels::gemm(2, 2, 3, aa, ta, bb, tb, &mut c, Acc::Set);
            assert_eq!(c, [4.0, 5.0, 10.0, 11.0], "ta={ta} tb={tb}");
        }
    }
}
