//! CSV data sets (`parse_csv`): typed errors, never a panic, whatever the
//! text and options.
//!
//! The first two bytes pick the options (header or not, delimiter, label
//! column, feature columns, label format, number of classes); the rest is
//! the file's text (invalid UTF-8 replaced, as `load_csv` refuses it before
//! parsing).
#![no_main]

// The capped allocator (see fuzz/src/lib.rs).
extern crate ember_fuzz;

use ember_nn_std::data::csv::{parse_csv, Column, CsvOptions, LabelFormat};
use ember_nn_std::data::Dataset;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const DELIMITERS: [u8; 8] = [b',', b';', b'\t', b' ', b'|', b'"', b':', 0xE9];

fn column(code: u8) -> Column {
    match code % 4 {
        0 => Column::Last,
        1 => Column::Index(usize::from(code >> 2) % 6),
        2 => Column::name("label"),
        _ => Column::name(["a", "b", "x", ""][usize::from(code >> 2) % 4]),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (a, b, text) = (data[0], data[1], &data[2..]);
    let mut opts = CsvOptions::new()
        .has_header(a & 1 == 0)
        .delimiter(DELIMITERS[usize::from(a >> 1) % DELIMITERS.len()])
        .label(column(b))
        .label_format(if a & 0x10 == 0 {
            LabelFormat::Integer
        } else {
            LabelFormat::Names
        });
    if a & 0x20 != 0 {
        opts = opts.num_classes(usize::from(b >> 4));
    }
    if a & 0x40 != 0 {
        opts = opts.features(vec![column(b >> 1), column(b >> 3)]);
    }
    let text = String::from_utf8_lossy(text);
    match parse_csv(Path::new("fuzz.csv"), &text, &opts) {
        Ok(ds) => {
            for i in 0..ds.len() {
                let s = ds.get(i).expect("a sample below len()");
                assert_eq!(s.features.len(), ds.feature_len());
                assert!(s.label < ds.num_classes());
            }
            let _ = ds.class_name(0);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
