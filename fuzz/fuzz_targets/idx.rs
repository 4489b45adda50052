//! IDX files (MNIST's format), uncompressed: `parse_idx` (any rank, with and
//! without an expected magic number), `parse_idx_images`,
//! `parse_idx_labels`. Typed errors, never a panic, whatever the bytes.
#![no_main]

// The capped allocator (see fuzz/src/lib.rs).
extern crate ember_fuzz;

use ember_nn_std::data::idx::{self, IMAGES_MAGIC, LABELS_MAGIC};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz-idx3-ubyte");
    if let Ok(a) = idx::parse_idx(path, data, None) {
        let numel = a.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(numel, Some(a.data.len()));
        assert_eq!(a.magic().to_be_bytes(), data[..4]);
        // What parses re-encodes to the same bytes.
        assert_eq!(
            idx::encode_idx(&a.dims, &a.data).ok().as_deref(),
            Some(data)
        );
    }
    let _ = idx::parse_idx(path, data, Some(IMAGES_MAGIC));
    let _ = idx::parse_idx(path, data, Some(LABELS_MAGIC));
    if let Ok(img) = idx::parse_idx_images(path, data) {
        assert_eq!(img.count * img.rows * img.cols, img.pixels.len());
    }
    if let Err(e) = idx::parse_idx_labels(path, data) {
        let _ = e.to_string();
    }
});
