//! CSV tables (`data::table::parse_csv_table`) and the classification data
//! sets made of them (`Table::classify`, `classify_like`, a stratified
//! split): typed errors, never a panic, whatever the bytes.
//!
//! The first byte picks the options (header auto, yes or no; delimiter;
//! target column; feature columns); the rest is the file's bytes, as read
//! (not UTF-8 checked first).
#![no_main]

// The capped allocator (see fuzz/src/lib.rs).
extern crate ember_fuzz;

use ember_nn_std::data::split::stratified_split;
use ember_nn_std::data::table::{parse_csv_table, Column, CsvFormat, Header};
use ember_nn_std::data::Dataset;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b' '];

fuzz_target!(|data: &[u8]| {
    let Some((&a, bytes)) = data.split_first() else {
        return;
    };
    let format = CsvFormat {
        header: [Header::Auto, Header::Yes, Header::No, Header::Auto][usize::from(a & 3)],
        delimiter: DELIMITERS[usize::from(a >> 2) & 3],
    };
    let target = match (a >> 4) & 3 {
        0 => Column::Last,
        1 => Column::Index(0),
        2 => Column::name("label"),
        _ => Column::name("1"),
    };
    let features = (a & 0x40 != 0).then(|| vec![Column::Index(0), Column::name("x")]);
    let table = match parse_csv_table(Path::new("fuzz.csv"), bytes, &format) {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for r in 0..table.rows() {
        for c in 0..table.width() {
            assert!(table.cell(r, c).is_some());
        }
    }
    match table.classify(&target, features.as_deref()) {
        Ok(cls) => {
            let ds = &cls.dataset;
            assert!(ds.num_classes() >= 2);
            assert_eq!(ds.class_names().len(), ds.num_classes());
            for i in 0..ds.len() {
                let s = ds.get(i).expect("a sample below len()");
                assert_eq!(s.features.len(), ds.feature_len());
                assert!(s.features.iter().all(|v| v.is_finite()));
            }
            let _ = cls.task();
            let again = table.classify_like(&cls).expect("a table is like itself");
            assert_eq!(again.labels(), ds.labels());
            let (kept, held) = stratified_split(ds, 0.25, u64::from(a)).expect("a valid split");
            assert_eq!(kept.len() + held.len(), ds.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
