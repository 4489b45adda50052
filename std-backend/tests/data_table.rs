//! Data files as tables (`data::table`): CSV as the `csv` crate reads it,
//! gzipped CSV, NumPy `.npy` and `.npz`; classification data sets of their
//! columns; every bad input a typed error naming the file.

use ember_nn_std::data::split::stratified_split;
use ember_nn_std::data::table::{read_table, Column, Header, LabelKind, ReadOptions, Table};
use ember_nn_std::data::{DataError, Dataset, Location};
use std::io::Write;
use std::path::{Path, PathBuf};

const IRIS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tables/iris.csv");

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read(p: &Path) -> Result<Table, DataError> {
    read_table(p, &ReadOptions::new())
}

fn classify(p: &Path) -> Result<ember_nn_std::data::table::Classified, DataError> {
    read(p)?.classify(&Column::Last, None)
}

/// A NumPy `.npy` file (format 1.0) of `descr` values `data`.
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn le<const N: usize, T: Copy>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

#[test]
fn quoted_newlines_crlf_bom_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\u{feff}width,\"note, quoted\",class\r\n1.5,\"two\r\nlines, \"\"quoted\"\"\",cat\r\n\r\n2.5,plain,dog\r\n3,x,cat\r\n";
    let p = write(dir.path(), "crlf.csv", text.as_bytes());
    let t = read(&p).unwrap();
    assert!(t.has_header());
    assert_eq!(t.column_names(), &["width", "note, quoted", "class"]);
    assert_eq!(t.rows(), 3);
    assert_eq!(t.location(1), Location::Line(5));
    let c = t
        .classify(&Column::name("class"), Some(&[Column::name("width")]))
        .unwrap();
    assert_eq!(c.dataset.features(), &[1.5, 2.5, 3.0]);
    assert_eq!(c.dataset.labels(), &[0, 1, 0]);
    assert_eq!(c.dataset.class_names(), &["cat", "dog"]);
    assert_eq!(c.kind, LabelKind::Strings);
    assert_eq!(
        c.task(),
        "classify: target column `class` holds 2 distinct strings"
    );
    // The quoted column is no feature: non-numeric, named in the error.
    let e = t.classify(&Column::name("class"), None).unwrap_err();
    assert!(
        matches!(&e, DataError::BadCell { line: 2, column: 2, name: Some(n), cell, .. }
            if n == "note, quoted" && cell.starts_with("two\r\nlines")),
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 1, "{e}");

    // No header: detected, or said.
    let p = write(dir.path(), "plain.csv", b"1,2,0\n3,4,1\n5,6,1\n");
    let t = read(&p).unwrap();
    assert!(!t.has_header());
    assert_eq!(t.column_names(), &["0", "1", "2"]);
    let opts = ReadOptions {
        header: Header::Yes,
        ..ReadOptions::new()
    };
    assert_eq!(read_table(&p, &opts).unwrap().rows(), 2);
    // A header of numbers only is a header when said so.
    let p = write(dir.path(), "numbered.csv", b"10,20,30\n1,2,0\n3,4,1\n");
    assert_eq!(
        read_table(&p, &opts).unwrap().column_names(),
        &["10", "20", "30"]
    );
    let opts = ReadOptions {
        header: Header::No,
        ..ReadOptions::new()
    };
    let p = write(dir.path(), "names.csv", b"a,b\n1,x\n");
    assert_eq!(read_table(&p, &opts).unwrap().rows(), 2);

    // Tabs in a .tsv, and a gzipped CSV.
    let p = write(dir.path(), "t.tsv", b"a\tb\n1\tx\n2\ty\n");
    assert_eq!(classify(&p).unwrap().dataset.features(), &[1.0, 2.0]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"a,b\n1,x\n2,y\n3,x\n").unwrap();
    let p = write(dir.path(), "t.csv.gz", &gz.finish().unwrap());
    assert_eq!(classify(&p).unwrap().dataset.labels(), &[0, 1, 0]);
    let p = write(dir.path(), "bad.csv.gz", b"\x1f\x8b\x08\x00garbage");
    assert!(matches!(read(&p), Err(DataError::Gzip { .. })));
}

#[test]
fn iris_by_name_index_and_default() {
    let t = read(Path::new(IRIS)).unwrap();
    let c = t.classify(&Column::Last, None).unwrap();
    assert_eq!((c.dataset.len(), c.dataset.feature_len()), (150, 4));
    assert_eq!(
        c.dataset.class_names(),
        &["setosa", "versicolor", "virginica"]
    );
    assert_eq!(c.dataset.class_counts(), vec![50, 50, 50]);
    let by_index = t
        .classify(
            &Column::name("4"),
            Some(&[Column::Index(2), Column::name("petal_width")]),
        )
        .unwrap();
    assert_eq!(by_index.feature_names, ["petal_length", "petal_width"]);
    assert_eq!(by_index.dataset.get(0).unwrap().features, &[1.4, 0.2]);

    // Sorted by class, yet every class keeps its share in both parts.
    let (train, test) = stratified_split(&c.dataset, 0.2, 0).unwrap();
    assert_eq!(test.class_counts(), vec![10, 10, 10]);
    assert_eq!(train.class_counts(), vec![40, 40, 40]);
    assert_eq!(test.class_names(), c.dataset.class_names());
}

#[test]
fn integer_labels_are_numbered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "ints.csv", b"x,y\n1,10\n2,9\n3,10.0\n4,-1\n");
    let c = classify(&p).unwrap();
    assert_eq!(c.kind, LabelKind::Integers);
    assert_eq!(c.dataset.class_names(), &["-1", "9", "10"]);
    assert_eq!(c.dataset.labels(), &[2, 1, 2, 0]);
    assert_eq!(
        c.task(),
        "classify: target column `y` holds 3 distinct integers"
    );

    let p = write(dir.path(), "real.csv", b"x,y\n1,0.5\n2,1\n");
    let e = classify(&p).unwrap_err();
    assert!(
        matches!(&e, DataError::NotClasses { example, at: Location::Line(2), .. } if example == "0.5"),
        "{e}"
    );
}

#[test]
fn bad_csv_inputs_are_errors_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a str, &'a [u8], fn(&DataError) -> bool);
    let cases: Vec<Case> = vec![
        ("ragged.csv", b"a,b,c\n1,2,x\n3,4\n", |e| {
            matches!(
                e,
                DataError::RaggedRow {
                    line: 3,
                    expected: 3,
                    found: 2,
                    ..
                }
            )
        }),
        ("cell.csv", b"a,b,c\n1,2,x\n3,four,y\n", |e| {
            matches!(e, DataError::BadCell { line: 3, column: 2, name: Some(n), cell, .. }
                if n == "b" && cell == "four")
        }),
        ("empty.csv", b"", |e| matches!(e, DataError::Format { .. })),
        ("blank.csv", b"\n \n\r\n", |e| {
            matches!(e, DataError::Format { .. })
        }),
        ("header-only.csv", b"a,b\n", |e| {
            matches!(e, DataError::Format { .. })
        }),
        (
            "one-class.csv",
            b"a,b\n1,x\n2,x\n",
            |e| matches!(e, DataError::OneClass { class, .. } if class == "x"),
        ),
        (
            "nan.csv",
            b"a,b\n1,x\nNaN,y\n",
            |e| matches!(e, DataError::BadCell { line: 3, column: 1, problem, .. } if problem.contains("finite")),
        ),
        ("inf.csv", b"a,b\n1,x\n2,y\n-inf,x\n", |e| {
            matches!(
                e,
                DataError::BadCell {
                    line: 4,
                    column: 1,
                    ..
                }
            )
        }),
        ("missing-label.csv", b"a,b\n1,x\n2,\n", |e| {
            matches!(
                e,
                DataError::BadCell {
                    line: 3,
                    column: 2,
                    ..
                }
            )
        }),
        ("latin1.csv", b"a,b\n1,caf\xe9\n", |e| {
            matches!(e, DataError::Format { .. })
        }),
    ];
    for (name, text, expected) in cases {
        let p = write(dir.path(), name, text);
        let e = classify(&p).unwrap_err();
        assert!(expected(&e), "{name}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(name) && msg.lines().count() == 1, "{msg}");
    }

    let p = write(dir.path(), "cols.csv", b"a,b,species\n1,2,x\n3,4,y\n");
    let e = read(&p)
        .unwrap()
        .classify(&Column::name("class"), None)
        .unwrap_err();
    assert!(matches!(&e, DataError::NoSuchColumn { columns, .. } if columns.len() == 3));
    assert!(e.to_string().contains("a, b, species"), "{e}");
    let e = read(&p)
        .unwrap()
        .classify(
            &Column::Last,
            Some(&[Column::name("a"), Column::name("species")]),
        )
        .unwrap_err();
    assert!(matches!(e, DataError::TargetAsFeature { .. }), "{e}");
    let e = read(&dir.path().join("absent.csv")).err().unwrap();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    let e = read(&write(dir.path(), "data.xlsx", b"PK")).err().unwrap();
    assert!(matches!(e, DataError::Format { .. }), "{e}");
}

#[test]
fn a_test_file_has_the_training_columns_and_classes() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", b"a,b,y\n1,2,cat\n3,4,dog\n");
    let train = classify(&train).unwrap();
    // Other column order: found by name.
    let test = write(dir.path(), "test.csv", b"y,b,a\ndog,20,10\ncat,40,30\n");
    let t = read(&test).unwrap().classify_like(&train).unwrap();
    assert_eq!(t.features(), &[10.0, 20.0, 30.0, 40.0]);
    assert_eq!(t.labels(), &[1, 0]);
    assert_eq!(t.class_names(), &["cat", "dog"]);
    let test = write(dir.path(), "unseen.csv", b"a,b,y\n1,2,cat\n3,4,bird\n");
    let e = read(&test).unwrap().classify_like(&train).unwrap_err();
    assert!(
        matches!(&e, DataError::UnseenClass { class, at: Location::Line(3), .. } if class == "bird"),
        "{e}"
    );
    assert!(e.to_string().contains("cat, dog"), "{e}");
    let test = write(dir.path(), "short.csv", b"a,y\n1,cat\n");
    let e = read(&test).unwrap().classify_like(&train).unwrap_err();
    assert!(matches!(e, DataError::NoSuchColumn { .. }), "{e}");
}

#[test]
fn npy_dtypes_orders_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let x32 = le(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], f32::to_le_bytes);
    let cases = [
        ("f32.npy", npy("<f4", false, &[3, 2], &x32)),
        (
            "f64-big.npy",
            npy(
                ">f8",
                false,
                &[3, 2],
                &le(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], f64::to_be_bytes),
            ),
        ),
        (
            "fortran.npy",
            npy(
                "<f4",
                true,
                &[3, 2],
                &le(&[1.0f32, 3.0, 5.0, 2.0, 4.0, 6.0], f32::to_le_bytes),
            ),
        ),
        (
            "i64.npy",
            npy(
                "<i8",
                false,
                &[3, 2],
                &le(&[1i64, 2, 3, 4, 5, 6], i64::to_le_bytes),
            ),
        ),
        ("u8.npy", npy("|u1", false, &[3, 2], &[1, 2, 3, 4, 5, 6])),
    ];
    let y = write(
        dir.path(),
        "y.npy",
        &npy("<i8", false, &[3], &le(&[2i64, 0, 2], i64::to_le_bytes)),
    );
    for (name, bytes) in cases {
        let p = write(dir.path(), name, &bytes);
        let opts = ReadOptions {
            labels: Some(y.clone()),
            ..ReadOptions::new()
        };
        let t = read_table(&p, &opts).unwrap();
        assert_eq!(t.column_names(), &["0", "1", "label"], "{name}");
        let c = t.classify(&Column::Last, None).unwrap();
        assert_eq!(
            c.dataset.features(),
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "{name}"
        );
        assert_eq!(c.dataset.labels(), &[1, 0, 1], "{name}");
        assert_eq!(c.dataset.class_names(), &["0", "2"], "{name}");
    }
    // Bool labels; a 3-D array's trailing axes flattened.
    let yb = write(dir.path(), "yb.npy", &npy("|b1", false, &[2], &[1, 0]));
    let x3 = write(
        dir.path(),
        "x3.npy",
        &npy("<f4", false, &[2, 1, 2], &x32[..16]),
    );
    let opts = ReadOptions {
        labels: Some(yb),
        ..ReadOptions::new()
    };
    let c = read_table(&x3, &opts)
        .unwrap()
        .classify(&Column::Last, None)
        .unwrap();
    assert_eq!(c.kind, LabelKind::Bools);
    assert_eq!(c.dataset.class_names(), &["false", "true"]);
    assert_eq!(c.dataset.labels(), &[1, 0]);
    assert_eq!(c.dataset.feature_len(), 2);
}

#[test]
fn npz_features_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let x = npy(
        "<f8",
        false,
        &[4, 1],
        &le(&[0.5f64, 1.5, 2.5, 3.5], f64::to_le_bytes),
    );
    let y = npy("<i4", false, &[4], &le(&[1i32, 0, 1, 0], i32::to_le_bytes));
    let mut bytes = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("y.npy", opts).unwrap();
        z.write_all(&y).unwrap();
        z.start_file("x.npy", opts).unwrap();
        z.write_all(&x).unwrap();
        z.finish().unwrap();
    }
    let p = write(dir.path(), "d.npz", &bytes);
    let c = classify(&p).unwrap();
    assert_eq!(c.dataset.features(), &[0.5, 1.5, 2.5, 3.5]);
    assert_eq!(c.dataset.labels(), &[1, 0, 1, 0]);
    let e = read(&write(dir.path(), "bad.npz", b"PK\x03\x04nonsense"))
        .err()
        .unwrap();
    assert!(matches!(e, DataError::Format { .. }), "{e}");
}

#[test]
fn bad_npy_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let with_labels = |x: &Path, y: &Path| {
        let opts = ReadOptions {
            labels: Some(y.to_path_buf()),
            ..ReadOptions::new()
        };
        read_table(x, &opts)
    };
    for descr in ["<U1", "<c8", "<f2", "|O"] {
        let p = write(dir.path(), "s.npy", &npy(descr, false, &[1], &[0; 4]));
        let e = read(&p).err().unwrap();
        assert!(
            matches!(&e, DataError::UnsupportedDtype { dtype, .. } if dtype.contains(&descr[1..])),
            "{descr}: {e}"
        );
    }
    let x = write(dir.path(), "x.npy", &npy("|u1", false, &[3, 1], &[1, 2, 3]));
    let y = write(dir.path(), "y.npy", &npy("|u1", false, &[2], &[0, 1]));
    let e = with_labels(&x, &y).err().unwrap();
    assert!(
        matches!(
            e,
            DataError::RowMismatch {
                rows: 3,
                labels: 2,
                ..
            }
        ),
        "{e}"
    );
    let nan = le(&[1.0f32, f32::NAN, 2.0, 3.0], f32::to_le_bytes);
    let p = write(dir.path(), "nan.npy", &npy("<f4", false, &[2, 2], &nan));
    let y = write(dir.path(), "y2.npy", &npy("|u1", false, &[2], &[0, 1]));
    let e = with_labels(&p, &y)
        .unwrap()
        .classify(&Column::Last, None)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NotFinite {
                row: 0,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
    let big = le(&[1e300f64, 1.0], f64::to_le_bytes);
    let p = write(dir.path(), "big.npy", &npy("<f8", false, &[2, 1], &big));
    let e = with_labels(&p, &y)
        .unwrap()
        .classify(&Column::Last, None)
        .unwrap_err();
    assert!(matches!(e, DataError::NotFinite { row: 0, .. }), "{e}");
    let p = write(dir.path(), "short.npy", &npy("<f4", false, &[4, 2], &nan));
    assert!(matches!(read(&p), Err(DataError::Truncated { .. })));
    let p = write(dir.path(), "junk.npy", b"not numpy at all");
    assert!(matches!(read(&p), Err(DataError::Format { .. })));
    let e = read_table(
        write(dir.path(), "t.csv", b"a,b\n1,2\n"),
        &ReadOptions {
            labels: Some(y),
            ..ReadOptions::new()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, DataError::Format { .. }), "{e}");
}

#[test]
fn files_too_large_for_memory_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let small = |memory| ReadOptions {
        memory: Some(memory),
        ..ReadOptions::new()
    };
    let p = write(dir.path(), "t.csv", b"a,b\n1,x\n2,y\n");
    assert!(read_table(&p, &small(1 << 20)).is_ok());
    let e = read_table(&p, &small(16)).err().unwrap();
    assert!(
        matches!(e, DataError::TooLarge { available: 16, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("too large for memory"), "{e}");

    // Gzip: read no further than the budget, whatever it decompresses to.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'1'; 1 << 20]).unwrap();
    let p = write(dir.path(), "bomb.csv.gz", &gz.finish().unwrap());
    let e = read_table(&p, &small(1 << 16)).err().unwrap();
    assert!(matches!(e, DataError::TooLarge { .. }), "{e}");

    // A .npy whose elements would not fit, found from its header.
    let p = write(
        dir.path(),
        "x.npy",
        &npy("|u1", false, &[64, 64], &[0; 4096]),
    );
    let e = read_table(&p, &small(40_000)).err().unwrap();
    assert!(matches!(e, DataError::TooLarge { .. }), "{e}");

    // A sparse file far larger than the machine's memory: refused from its size.
    // (Skipped where the file system refuses such a file.)
    if let Some(available) = ember_nn_std::train::available_memory() {
        let p = dir.path().join("huge.csv");
        if std::fs::File::create(&p)
            .unwrap()
            .set_len(available)
            .is_ok()
        {
            let e = read(&p).err().unwrap();
            assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
        }
    }
}

#[test]
fn regression_tables_and_the_task_a_column_suggests() {
    use ember_nn_std::config::TaskKind;
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "r.csv",
        b"a,b,y,z,k\n1,2,0.5,10,1\n3,4,1.5,20,2\n5,6,2.5,30,1\n",
    );
    let t = read(&p).unwrap();
    let i = t.infer_task(&Column::name("y")).unwrap();
    assert_eq!(i.task, TaskKind::Regress);
    assert!(
        i.reason
            .contains("`y` holds numbers that are not integers (0.5"),
        "{}",
        i.reason
    );
    let i = t.infer_task(&Column::name("k")).unwrap();
    assert_eq!(
        (i.task, i.reason.as_str()),
        (
            TaskKind::Classify,
            "target column `k` holds 2 distinct integers"
        )
    );
    // Two targets; the features are the other columns.
    let r = t
        .regress(&[Column::name("y"), Column::name("z")], None)
        .unwrap();
    assert_eq!(r.feature_names, ["a", "b", "k"]);
    assert_eq!(r.target_names, ["y", "z"]);
    assert_eq!(r.dataset.target(1), Some(&[1.5, 20.0][..]));
    assert_eq!(r.dataset.features()[..3], [1.0, 2.0, 1.0]);
    // A test file with the columns in another order is read by name.
    let q = write(dir.path(), "q.csv", b"z,k,y,b,a\n40,2,3.5,8,7\n");
    let test = read(&q).unwrap().regress_like(&r).unwrap();
    assert_eq!(
        (test.features(), test.targets()),
        (&[7.0, 8.0, 2.0][..], &[3.5, 40.0][..])
    );
    // An autoencoder: the features are the targets.
    let ae = t
        .reconstruct(Some(&[Column::name("a"), Column::name("b")]))
        .unwrap();
    assert_eq!(ae.dataset.features(), ae.dataset.targets());
    // A target that is not a number names its line, column and text.
    let bad = write(dir.path(), "bad.csv", b"a,y\n1,0.5\n2,high\n");
    let e = read(&bad)
        .unwrap()
        .regress(&[Column::Last], None)
        .unwrap_err();
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
    assert!(e.to_string().contains("\"high\""), "{e}");
    // A target among the features is refused.
    assert!(matches!(
        t.regress(&[Column::name("y")], Some(&[Column::name("y")])),
        Err(DataError::TargetAsFeature { .. })
    ));
}
