//! IDX files through `decode_maybe_gz` (gzip by name or by magic bytes, then
//! parsed). The first byte picks the mode: bit 0 clear, the rest is fed as
//! the file's bytes (corrupt gzip streams, by name `.gz` or by the magic
//! bytes); bit 0 set, the rest is gzip-compressed here first (with bit 1
//! picking one member or two), so that mutations of the IDX inside a valid
//! stream reach the parser. Typed errors, never a panic.
#![no_main]

use ember_fuzz::split_byte;
use ember_nn_std::data::idx;
use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::Path;

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(p).expect("writing to a Vec");
        out.extend(enc.finish().expect("writing to a Vec"));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = split_byte(data) else {
        return;
    };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else if mode & 2 == 0 {
        gzip(&[rest])
    } else {
        let (a, b) = rest.split_at(rest.len() / 2);
        gzip(&[a, b])
    };
    let path = Path::new(if mode & 4 == 0 {
        "fuzz-idx1-ubyte.gz"
    } else {
        "fuzz-idx1-ubyte"
    });
    let Ok(raw) = idx::decode_maybe_gz(path, file) else {
        return;
    };
    if mode & 1 == 1 {
        assert_eq!(
            raw, rest,
            "a valid gzip stream decodes to what was compressed"
        );
    }
    let _ = idx::parse_idx(path, &raw, None);
    let _ = idx::parse_idx_images(path, &raw);
    let _ = idx::parse_idx_labels(path, &raw);
});
