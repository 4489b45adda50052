//! CRC-32 (IEEE 802.3, as zlib and PNG), with a table built at compile time.

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continues a CRC-32 over `data` from a previous value (0 to start).
///
/// Reads a little-endian word at a time and folds it into the CRC with four
/// lookups in the one 1 KiB table: 4 instructions a byte on a Cortex-M4 (a
/// byte at a time costs 5.5), with no bigger table in flash.
pub fn crc32(prev: u32, data: &[u8]) -> u32 {
    let words = data.len() / 4;
    let (body, tail) = data.split_at(4 * words);
    let mut c = words_crc(!prev, body);
    for &b in tail {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// The running (inverted) CRC `c` over `body`, a multiple of 4 bytes long.
#[cfg(not(ember_dsp))]
fn words_crc(mut c: u32, body: &[u8]) -> u32 {
    for w in body.chunks_exact(4) {
        c ^= u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        for _ in 0..4 {
            c = TABLE[(c & 0xFF) as usize] ^ (c >> 8);
        }
    }
    c
}

/// As the portable loop, in Thumb-2 assembly: LLVM unrolls the portable
/// loop four times (about 500 bytes of flash for nothing the instruction
/// count needs); this is 16 instructions a word in 40 bytes.
#[cfg(ember_dsp)]
fn words_crc(c: u32, body: &[u8]) -> u32 {
    let words = body.len() / 4;
    if words == 0 {
        return c;
    }
    let out: u32;
    // SAFETY: the loop runs `words` (> 0) times and reads the word at `p`,
    // advancing `p` by 4: exactly `body` (4 · words bytes). Each table index
    // is a byte (`uxtb`), so the loads from `TABLE` (256 words) are in
    // bounds. Unaligned word loads are allowed on Armv7E-M. It writes only
    // its operand registers and the flags.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {t}, [{p}], #4",
            "eors {c}, {t}",
            "uxtb {t}, {c}",
            "ldr {t}, [{tab}, {t}, lsl #2]",
            "eor {c}, {t}, {c}, lsr #8",
            "uxtb {t}, {c}",
            "ldr {t}, [{tab}, {t}, lsl #2]",
            "eor {c}, {t}, {c}, lsr #8",
            "uxtb {t}, {c}",
            "ldr {t}, [{tab}, {t}, lsl #2]",
            "eor {c}, {t}, {c}, lsr #8",
            "uxtb {t}, {c}",
            "ldr {t}, [{tab}, {t}, lsl #2]",
            "eor {c}, {t}, {c}, lsr #8",
            "subs {n}, #1",
            "bne 2b",
            c = inout(reg) c => out,
            p = inout(reg) body.as_ptr() => _,
            n = inout(reg) words => _,
            tab = in(reg) TABLE.as_ptr(),
            t = out(reg) _,
            options(readonly, nostack),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        assert_eq!(super::crc32(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(
            super::crc32(super::crc32(0, b"1234"), b"56789"),
            0xCBF4_3926
        );
        assert_eq!(super::crc32(0, b""), 0);
        // Every length and split agrees with the byte-at-a-time definition.
        let data: [u8; 37] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let bytewise = |prev: u32, d: &[u8]| {
            let mut c = !prev;
            for &b in d {
                c = super::TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
            }
            !c
        };
        for n in 0..data.len() {
            for k in 0..=n {
                let split = super::crc32(super::crc32(0, &data[..k]), &data[k..n]);
                assert_eq!(split, bytewise(0, &data[..n]), "{n} split at {k}");
            }
        }
    }
}
