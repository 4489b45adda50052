//! Inputs that `scripts/fuzz.sh` (fuzz/fuzz_targets/) found to crash, abort
//! or break a property, kept as regression tests. The files under
//! tests/data/fuzz/ are the inputs as the targets saw them.

use ember_nn_std::data::table::{parse_csv_table, parse_npy, Column, CsvFormat, Header};
use ember_nn_std::data::DataError;
use ember_nn_std::image;
use std::path::Path;

/// A `.npy` of format version 2 whose header length field says 662 MB:
/// npyz 0.9.1 allocated the header before reading it, which the fuzz
/// target's allocator cap aborted (a real reader would have tried to
/// allocate up to 4 GiB for a 258-byte file). The length is now checked
/// against the file first.
#[test]
fn npy_header_longer_than_the_file_is_refused_before_allocating() {
    let input = include_bytes!("data/fuzz/npy-huge-header-length.bin");
    // The fuzz target's first byte picks the reader (0: a lone .npy).
    let e = parse_npy(Path::new("x.npy"), &input[1..], None, 16 << 20)
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                what: "the .npy header",
                ..
            }
        ),
        "{e}"
    );
}

/// A 300-byte `.npy` whose header opens 86 `{`: npyz's header parser
/// (py_literal, a backtracking pest grammar) took over 10 s, exponential in
/// the nesting depth (a libFuzzer timeout). Headers nested deeper than
/// NumPy's ever are refused before parsing.
#[test]
fn npy_header_of_nested_brackets_is_refused_at_once() {
    let input = include_bytes!("data/fuzz/npy-nested-header.bin");
    // The fuzz target's first byte (1) says features and labels, the second
    // where the labels start.
    let at = (usize::from(input[1]) * 4).min(input.len() - 2);
    let (x, y) = input[2..].split_at(at);
    let started = std::time::Instant::now();
    let e = parse_npy(
        Path::new("x.npy"),
        x,
        Some((Path::new("y.npy"), y)),
        16 << 20,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("nested"), "{e}");
    assert!(started.elapsed().as_secs() < 2);
}

/// A CSV file whose detected header names two columns "" (`;;2`): a test
/// file was matched to the training columns by name, and the target's name
/// found the first of the two, so the table was not "like itself". A name
/// repeated in the header is now matched by index.
#[test]
fn csv_header_with_repeated_names_matches_columns_by_index() {
    let input = include_bytes!("data/fuzz/csv-duplicate-header-names.bin");
    // Options byte 0x34: header auto, ';', target column "1".
    let format = CsvFormat {
        header: Header::Auto,
        delimiter: b';',
    };
    let table = parse_csv_table(Path::new("dup.csv"), &input[1..], &format).unwrap();
    assert_eq!(table.column_names(), &["", "", "2"]);
    let train = table.classify(&Column::name("1"), None).unwrap();
    let again = table.classify_like(&train).unwrap();
    assert_eq!(again.labels(), train.dataset.labels());
}

/// A 92-byte PNG whose header claims 52 × 2,149,122,048 RGB pixels: the
/// decoder allocated the whole output buffer (335 GB) before reading any
/// pixel data, and the allocation failure aborted the process. The header is
/// now checked against `MAX_PIXELS` and against the file's length first.
#[test]
fn png_with_a_huge_header_is_an_error_not_an_abort() {
    let bytes = include_bytes!("data/fuzz/png-huge-header.png");
    let e = image::decode(Path::new("huge.png"), bytes).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("huge.png") && msg.contains("PNG size"),
        "{msg}"
    );
}

/// The same file with a header of 8000 × 8000 pixels (within `MAX_PIXELS`):
/// 64 MB of pixels cannot inflate from 83 bytes, so it is refused as
/// truncated before the buffer is allocated.
#[test]
fn png_too_short_for_its_header_is_refused_before_allocating() {
    let mut bytes = include_bytes!("data/fuzz/png-huge-header.png").to_vec();
    bytes[16..20].copy_from_slice(&8000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&8000u32.to_be_bytes());
    let crc = ember_nn_core::deploy::crc32(0, &bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    let msg = image::decode(Path::new("short.png"), &bytes)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated PNG"), "{msg}");
}

/// An indexed 3 × 2 PNG whose PLTE chunk is 10 bytes long (not RGB
/// triples): png 0.18.1 panicked expanding the palette ("range end index 3
/// out of range for slice of length 1", image-rs/image-png#694). The
/// palette's length is now checked before decoding.
#[test]
fn png_palette_that_is_not_rgb_triples_is_an_error_not_a_panic() {
    let bytes = include_bytes!("data/fuzz/png-palette-not-triples.png");
    let msg = image::decode(Path::new("palette.png"), bytes)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("malformed PNG palette"), "{msg}");
}
