//! The square root the whole crate computes with: `libm::sqrtf`, or on
//! hard-float Arm the FPU's `vsqrt.f32`, which gives the same bits (both are
//! correctly rounded). A module of its own, below `backend`, `rng` and `nn`,
//! which all use it.

/// `√x`, correctly rounded: the FPU's instruction where there is one
/// (hard-float Arm), `libm::sqrtf` elsewhere.
#[inline(always)]
pub(crate) fn sqrtf(x: f32) -> f32 {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    {
        // Every hard-float Arm target has the FPU's square root, correctly
        // rounded as `libm::sqrtf` is (the same bits; only a NaN's payload
        // may differ): one instruction instead of libm's software routine
        // (0.5 KB with its table, and tens of instructions per call).
        // Through a core register and `s0`, saved on the stack: the
        // floating-point register classes of `asm!` need target
        // features that stable Rust does not name.
        let y: u32;
        // SAFETY: `s0` is restored before the block ends; the block reads
        // and writes only its own operands and its stack slot.
        unsafe {
            core::arch::asm!(
                "vpush {{s0}}",
                "vmov s0, {x}",
                "vsqrt.f32 s0, s0",
                "vmov {y}, s0",
                "vpop {{s0}}",
                x = in(reg) x.to_bits(),
                y = lateout(reg) y,
                options(pure, nomem, preserves_flags)
            );
        }
        f32::from_bits(y)
    }
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    {
        libm::sqrtf(x)
    }
}
