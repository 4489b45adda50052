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
pub fn crc32(prev: u32, data: &[u8]) -> u32 {
    let mut c = !prev;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
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
    }
}
