//! Images for `ember predict` (`image::decode`, what `image::read` reads a
//! file with): PNG and PGM (P2, P5), then the resize to the model's input.
//! Typed errors, never a panic, whatever the bytes; a decoded image has
//! `width · height` pixels in `[0, 1]`.
//!
//! A PNG is decoded as given, then with every chunk's CRC repaired, so that
//! mutations inside chunks (the header's sizes, colour type, interlacing,
//! palette, compressed data) reach the decoder behind the checksums.
#![no_main]

use ember_nn_core::deploy::crc32;
use ember_nn_std::image;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fuzz_target!(
    init: {
        // A valid PNG of a few KB may inflate to `MAX_PIXELS` RGBA pixels
        // (and as many f32): allow those buffers, nothing larger.
        ember_fuzz::set_alloc_limit(4 * image::MAX_PIXELS);
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    check(data);
    if data.starts_with(SIGNATURE) {
        let fixed = crcs_repaired(data);
        if fixed != data {
            check(&fixed);
        }
    }
}

fn check(data: &[u8]) {
    match image::decode(Path::new("fuzz.png"), data) {
        Ok(img) => {
            assert_eq!(img.pixels.len(), img.width * img.height);
            assert!(
                img.pixels.iter().all(|p| (0.0..=1.0).contains(p)),
                "a pixel outside [0, 1]"
            );
            let small = img.resize(28, 28);
            assert_eq!(small.pixels.len(), 28 * 28);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The PNG's chunks with their CRCs recomputed (a chunk cut short is left as is).
fn crcs_repaired(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = SIGNATURE.len();
    while let Some(len) = out.get(at..at + 4) {
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(end) = (at + 8).checked_add(len) else {
            break;
        };
        if end + 4 > out.len() {
            break;
        }
        let crc = crc32(0, &out[at + 4..end]);
        out[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
    out
}
