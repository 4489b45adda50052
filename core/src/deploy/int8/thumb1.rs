//! The int8 kernel of Armv6-M (Cortex-M0/M0+): no DSP extension and only
//! the low registers for most instructions, so two rows of a block at a
//! time, one multiply and add per weight, in assembly (LLVM unrolls the
//! portable loop and spills the accumulators).

use super::{blocks, Input, Int8Layer};

/// Per block: rows 0 and 1, then rows 2 and 3, over the block's groups (in
/// assembly when the input needs no flip), then its leftover columns; then
/// the leftover rows.
pub(super) fn kernel(layer: &Int8Layer<'_, '_>, x: Input<'_>, y: &mut [u8]) {
    let groups = x.bytes.len() / 4;
    let assembly = x.flip == 0 && groups > 0;
    blocks(
        layer,
        x,
        y,
        |acc, block| {
            if !assembly || block.len() != 4 * x.bytes.len() {
                return 0;
            }
            let [a0, a1, a2, a3] = acc;
            pair_groups(a0, a1, block, x.bytes, groups);
            // Rows 2 and 3 of a group start 8 bytes into it.
            pair_groups(a2, a3, &block[8..], x.bytes, groups);
            groups
        },
        |_, _| 0,
    );
}

/// Adds to `a0` and `a1` the products of `groups` groups of two rows: bytes
/// 0..4 (row `r`) and 4..8 (row `r + 1`) of each 16 in `w`, times the
/// unsigned bytes of `x`, four a group. Needs `groups > 0`,
/// `16 · (groups − 1) + 8 ≤ w.len()` and `4 · groups ≤ x.len()`.
#[inline(always)]
fn pair_groups(a0: &mut i32, a1: &mut i32, w: &[i8], x: &[u8], groups: usize) {
    if groups == 0 || 16 * (groups - 1) + 8 > w.len() || 4 * groups > x.len() {
        return;
    }
    // SAFETY: the loop runs `groups` (> 0) times; iteration g reads
    // x[4g..4g + 4] and w[16g..16g + 8], in bounds by the check above. It
    // writes only the operand registers, the flags, and r7 (which operands
    // may not name: pushed before and popped after, so the asm uses the
    // stack; no memory Rust can see is written).
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "2:",
            "ldrb r7, [{xp}, #0]",
            "ldrb {t}, [{wp}, #0]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a0}, {a0}, {t}",
            "ldrb {t}, [{wp}, #4]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a1}, {a1}, {t}",
            "ldrb r7, [{xp}, #1]",
            "ldrb {t}, [{wp}, #1]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a0}, {a0}, {t}",
            "ldrb {t}, [{wp}, #5]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a1}, {a1}, {t}",
            "ldrb r7, [{xp}, #2]",
            "ldrb {t}, [{wp}, #2]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a0}, {a0}, {t}",
            "ldrb {t}, [{wp}, #6]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a1}, {a1}, {t}",
            "ldrb r7, [{xp}, #3]",
            "ldrb {t}, [{wp}, #3]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a0}, {a0}, {t}",
            "ldrb {t}, [{wp}, #7]", "sxtb {t}, {t}", "muls {t}, r7, {t}", "adds {a1}, {a1}, {t}",
            "adds {xp}, #4",
            "adds {wp}, #16",
            "subs {n}, #1",
            "bne 2b",
            "pop {{r7}}",
            xp = inout(reg) x.as_ptr() => _,
            wp = inout(reg) w.as_ptr() => _,
            n = inout(reg) groups => _,
            a0 = inout(reg) *a0,
            a1 = inout(reg) *a1,
            t = out(reg) _,
            options(readonly),
        );
    }
}

/// The inner loop of the Armv6-M convolution kernel
/// (`deploy::graph::im2col`): adds to `a0` and `a1` the products of the
/// first `4 · groups` weights of row `w` with the im2col buffer `buf`, whose
/// tap `t` is `buf[2t]` (column 0) and `buf[2t + 1]` (column 1). 34
/// instructions for eight multiply-adds: per tap one `LDRSB` (indexed by a
/// counter that runs up to zero, which also ends the loop), two word loads,
/// two `MULS`, two `ADDS`, and the counter's step.
#[inline(always)]
pub(crate) fn conv_pair(a0: &mut i32, a1: &mut i32, w: &[i8], buf: &[i32], groups: usize) {
    if groups == 0 || w.len() < 4 * groups || buf.len() < 8 * groups {
        return;
    }
    let end = w[4 * groups..].as_ptr();
    let start = -(4 * groups as isize);
    // SAFETY: the loop runs `groups` (> 0) times; pass g reads the bytes at
    // `end + i` for i in −4(groups − g)..−4(groups − g) + 4, that is
    // w[4g..4g + 4], and the 32 bytes at `xp` (buf[8g..8g + 8]), then moves
    // `xp` by 32: in bounds by the check above (`buf` is a slice of i32,
    // word-aligned). It writes only the operand registers, the flags, and r7
    // (which operands may not name: pushed before and popped after, so the
    // asm uses the stack; no memory Rust can see is written).
    unsafe {
        core::arch::asm!(
            "push {{r7}}",
            "2:",
            "ldrsb r7, [{wp}, {i}]", "adds {i}, #1",
            "ldr {x}, [{xp}, #0]", "muls {x}, r7, {x}", "adds {a0}, {a0}, {x}",
            "ldr {x}, [{xp}, #4]", "muls {x}, r7, {x}", "adds {a1}, {a1}, {x}",
            "ldrsb r7, [{wp}, {i}]", "adds {i}, #1",
            "ldr {x}, [{xp}, #8]", "muls {x}, r7, {x}", "adds {a0}, {a0}, {x}",
            "ldr {x}, [{xp}, #12]", "muls {x}, r7, {x}", "adds {a1}, {a1}, {x}",
            "ldrsb r7, [{wp}, {i}]", "adds {i}, #1",
            "ldr {x}, [{xp}, #16]", "muls {x}, r7, {x}", "adds {a0}, {a0}, {x}",
            "ldr {x}, [{xp}, #20]", "muls {x}, r7, {x}", "adds {a1}, {a1}, {x}",
            "ldrsb r7, [{wp}, {i}]",
            "ldr {x}, [{xp}, #24]", "muls {x}, r7, {x}", "adds {a0}, {a0}, {x}",
            "ldr {x}, [{xp}, #28]", "muls {x}, r7, {x}", "adds {a1}, {a1}, {x}",
            "adds {xp}, #32",
            // The last step of the counter sets the flags for the branch.
            "adds {i}, #1",
            "bne 2b",
            "pop {{r7}}",
            wp = in(reg) end,
            i = inout(reg) start => _,
            xp = inout(reg) buf.as_ptr() => _,
            a0 = inout(reg) *a0,
            a1 = inout(reg) *a1,
            x = out(reg) _,
            options(readonly),
        );
    }
}
