//! NumPy arrays (`data::table::parse_npy`, `parse_npz`) and classification
//! data sets of them: typed errors, never a panic and no allocation sized by
//! a header on trust, whatever the bytes.
//!
//! The first byte picks the reader: `.npy` alone, a `.npy` of features and
//! one of labels (the second byte says where the input splits in two), or
//! an `.npz` archive; the rest is the file's bytes.
#![no_main]

// The capped allocator (see fuzz/src/lib.rs).
extern crate ember_fuzz;

use ember_nn_std::data::table::{parse_npy, parse_npz, Column, Table};
use ember_nn_std::data::Dataset;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// The memory a table may take: well below the allocator's cap.
const MEMORY: u64 = 16 << 20;

fn check(table: &Table) {
    for r in 0..table.rows().min(64) {
        for c in 0..table.width() {
            assert!(table.cell(r, c).is_some());
        }
    }
    if let Ok(cls) = table.classify(&Column::Last, None) {
        let ds = &cls.dataset;
        assert!(ds.num_classes() >= 2);
        for i in 0..ds.len() {
            let s = ds.get(i).expect("a sample below len()");
            assert_eq!(s.features.len(), ds.feature_len());
        }
        let _ = cls.task();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let result = match mode % 3 {
        0 => parse_npy(Path::new("x.npy"), rest, None, MEMORY),
        1 => {
            let Some((&at, rest)) = rest.split_first() else {
                return;
            };
            let at = (usize::from(at) * 4).min(rest.len());
            let (x, y) = rest.split_at(at);
            parse_npy(Path::new("x.npy"), x, Some((Path::new("y.npy"), y)), MEMORY)
        }
        _ => parse_npz(Path::new("d.npz"), rest, MEMORY),
    };
    match result {
        Ok(t) => check(&t),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
