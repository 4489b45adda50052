//! CSV loading: columns by name or index, optional header, and errors that
//! name the file, the line and the column.

use ember_nn_std::data::csv::{load_csv, Column, CsvOptions, LabelFormat};
use ember_nn_std::data::{DataError, Dataset};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn header_names_and_default_label_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "xor.csv",
        "x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n",
    );
    let ds = load_csv(&p, &CsvOptions::new()).unwrap();
    assert_eq!((ds.len(), ds.feature_len(), ds.num_classes()), (4, 2, 2));
    assert_eq!(ds.get(1).unwrap().features, &[0.0, 1.0]);
    assert_eq!(ds.labels(), &[0, 1, 1, 0]);

    let opts = CsvOptions::new()
        .label(Column::name("x1"))
        .features(vec![Column::name("y"), Column::Index(1)]);
    let ds = load_csv(&p, &opts).unwrap();
    assert_eq!(ds.get(2).unwrap().features, &[1.0, 0.0]);
    assert_eq!(ds.labels(), &[0, 0, 1, 1]);
}

#[test]
fn no_header_tabs_quotes_and_named_classes() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "iris.tsv",
        "5.1\t3.5\t\"setosa\"\n6.3\t2.9\tvirginica\n\n5.9\t3.0\tversicolor\n",
    );
    let opts = CsvOptions::new()
        .has_header(false)
        .delimiter(b'\t')
        .label_format(LabelFormat::Names);
    let ds = load_csv(&p, &opts).unwrap();
    assert_eq!(ds.labels(), &[0, 2, 1]);
    assert_eq!(ds.class_names(), &["setosa", "versicolor", "virginica"]);
    assert_eq!(ds.get(1).unwrap().features, &[6.3, 2.9]);
}

#[test]
fn ragged_row_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "ragged.csv", "a,b,label\n1,2,0\n3,4\n5,6,1\n");
    let e = load_csv(&p, &CsvOptions::new()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::RaggedRow {
                line: 3,
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("{}:3", p.display())), "{msg}");
}

#[test]
fn non_numeric_cell_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cells.csv", "a,b,label\n1,2,0\n3,four,1\n");
    let e = load_csv(&p, &CsvOptions::new()).unwrap_err();
    assert!(
        matches!(&e, DataError::BadCell { line: 3, column: 2, name: Some(n), cell, .. }
            if n == "b" && cell == "four"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("{}:3", p.display())), "{msg}");
    assert!(
        msg.contains("column 2") && msg.contains("\"four\""),
        "{msg}"
    );

    // Without a header the column has no name; an empty cell and NaN are
    // not numbers either.
    for (text, column) in [("1,,0", 2), ("nan,1,0", 1)] {
        let p = write(dir.path(), "nohdr.csv", text);
        let e = load_csv(&p, &CsvOptions::new().has_header(false)).unwrap_err();
        assert!(
            matches!(e, DataError::BadCell { line: 1, column: c, name: None, .. } if c == column),
            "{e}"
        );
    }
}

#[test]
fn bad_labels_missing_columns_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "labels.csv", "a,label\n1,0\n2,1.5\n");
    let e = load_csv(&p, &CsvOptions::new()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadCell {
                line: 3,
                column: 2,
                ..
            }
        ),
        "{e}"
    );

    let p = write(dir.path(), "range.csv", "a,label\n1,0\n2,3\n");
    let e = load_csv(&p, &CsvOptions::new().num_classes(3)).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    assert_eq!(load_csv(&p, &CsvOptions::new()).unwrap().num_classes(), 4);

    let e = load_csv(&p, &CsvOptions::new().label(Column::name("class"))).unwrap_err();
    assert!(matches!(e, DataError::NoSuchColumn { .. }), "{e}");
    assert!(e.to_string().contains("range.csv"), "{e}");

    // A quoted field may span lines, so an unterminated quote runs to the
    // end of the file: a record one field short, starting on line 2.
    let p = write(dir.path(), "quote.csv", "a,label\n\"1,0\n");
    let e = load_csv(&p, &CsvOptions::new()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::RaggedRow {
                line: 2,
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{e}"
    );

    let p = write(dir.path(), "empty.csv", "\n\n");
    let e = load_csv(&p, &CsvOptions::new()).unwrap_err();
    assert!(matches!(e, DataError::Format { .. }), "{e}");

    let p = dir.path().join("absent.csv");
    let e = load_csv(&p, &CsvOptions::new()).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    assert!(e.to_string().contains("absent.csv"), "{e}");
}
