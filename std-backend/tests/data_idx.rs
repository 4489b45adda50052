//! IDX files and the (Fashion-)MNIST loaders: round trips, and every kind of
//! bad input giving the right error, naming the file.

use ember_nn_std::data::idx::{
    encode_idx, read_idx, read_idx_images, read_idx_labels, write_idx, IMAGES_MAGIC,
};
use ember_nn_std::data::{load_idx_pair, DataError, Dataset, FashionMnist, Mnist, Split};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` images of `rows × cols` whose pixels encode their image and position.
fn pixels(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    (0..n * rows * cols).map(|i| (i * 7 % 256) as u8).collect()
}

/// Writes a Fashion-MNIST-like split (gzip) into `dir`.
fn write_split(dir: &Path, split: Split, images: &[u8], n_images: usize, labels: &[u8]) {
    let (img, lbl) = split.file_names();
    write_idx(&dir.join(format!("{img}.gz")), &[n_images, 28, 28], images).unwrap();
    write_idx(&dir.join(format!("{lbl}.gz")), &[labels.len()], labels).unwrap();
}

fn assert_names(e: &DataError, path: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name {}: {msg}",
        path.display()
    );
}

#[test]
fn write_then_read_round_trips_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let data = pixels(3, 4, 5);
    for name in ["a-idx3-ubyte", "a-idx3-ubyte.gz"] {
        let p = dir.path().join(name);
        write_idx(&p, &[3, 4, 5], &data).unwrap();
        let img = read_idx_images(&p).unwrap();
        assert_eq!((img.count, img.rows, img.cols), (3, 4, 5));
        assert_eq!(img.pixels, data);
        let any = read_idx(&p).unwrap();
        assert_eq!(any.dims, vec![3, 4, 5]);
        assert_eq!(any.magic(), IMAGES_MAGIC);
    }
    // gzip is also recognised by its magic bytes, whatever the name.
    let p = dir.path().join("labels.bin");
    std::fs::write(&p, gz(&encode_idx(&[4], &[1, 2, 3, 4]).unwrap())).unwrap();
    assert_eq!(read_idx_labels(&p).unwrap(), vec![1, 2, 3, 4]);
    // The compressed file is much smaller than the raw one for regular data.
    let raw = std::fs::metadata(dir.path().join("a-idx3-ubyte"))
        .unwrap()
        .len();
    assert_eq!(raw, 16 + 60);
}

#[test]
fn truncated_or_corrupt_gzip_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = gz(&encode_idx(&[50, 28, 28], &pixels(50, 28, 28)).unwrap());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.gz", good[..good.len() / 2].to_vec()),
        ("no-trailer.gz", good[..good.len() - 4].to_vec()),
        ("header-only.gz", good[..5].to_vec()),
        ("empty.gz", Vec::new()),
        ("not-gzip.gz", b"hello, world".to_vec()),
        ("bad-crc.gz", {
            let mut b = good.clone();
            let n = b.len();
            b[n - 6] ^= 0xff; // the CRC-32 of the trailer
            b
        }),
        ("bad-deflate.gz", {
            let mut b = good.clone();
            for v in &mut b[12..40] {
                *v = 0xff;
            }
            b
        }),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }), "{name}: {e}");
        assert_names(&e, &p);
    }
}

#[test]
fn wrong_magic_names_the_file_and_both_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train-labels-idx1-ubyte.gz");
    write_idx(&p, &[3], &[0, 1, 2]).unwrap();
    let e = read_idx_images(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                found: 2049,
                expected: 2051,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &p);
    assert!(e.to_string().contains("2049") && e.to_string().contains("2051"));

    let p = dir.path().join("garbage");
    std::fs::write(&p, b"\x12\x34\x56\x78rest").unwrap();
    let e = read_idx_labels(&p).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                found: 0x1234_5678,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &p);
}

#[test]
fn truncated_data_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let full = encode_idx(&[10, 28, 28], &pixels(10, 28, 28)).unwrap();
    // Raw, cut inside the data, inside the header and inside the magic.
    for (name, cut) in [("data", full.len() - 100), ("header", 9), ("magic", 2)] {
        let p = dir.path().join(format!("cut-{name}-idx3-ubyte"));
        std::fs::write(&p, &full[..cut]).unwrap();
        let e = read_idx_images(&p).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { found, .. } if found == cut),
            "{e}"
        );
        assert_names(&e, &p);
    }
    // A valid gzip stream of a truncated IDX file.
    let p = dir.path().join("cut-idx3-ubyte.gz");
    std::fs::write(&p, gz(&full[..full.len() - 1])).unwrap();
    let e = read_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { .. }), "{e}");
    assert_names(&e, &p);
    // Extra bytes after the data.
    let p = dir.path().join("long-idx3-ubyte");
    let mut long = full.clone();
    long.extend_from_slice(&[0; 3]);
    std::fs::write(&p, long).unwrap();
    let e = read_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::TrailingData { extra: 3, .. }), "{e}");
    assert_names(&e, &p);
}

#[test]
fn missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.gz");
    let e = read_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    assert_names(&e, &p);
    let e = FashionMnist::load(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("train-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn image_and_label_counts_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    write_split(
        dir.path(),
        Split::Test,
        &pixels(5, 28, 28),
        5,
        &[0, 1, 2, 3],
    );
    let e = FashionMnist::load(dir.path(), Split::Test).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 5,
                labels: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &dir.path().join("t10k-images-idx3-ubyte.gz"));
    assert_names(&e, &dir.path().join("t10k-labels-idx1-ubyte.gz"));
}

#[test]
fn labels_must_be_classes() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), Split::Train, &pixels(3, 28, 28), 3, &[0, 10, 9]);
    let e = FashionMnist::load(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{e}"
    );
    assert_names(&e, &dir.path().join("train-labels-idx1-ubyte.gz"));
}

#[test]
fn images_must_be_28_by_28_for_fashion_mnist() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(
        &dir.path().join("train-images-idx3-ubyte"),
        &[2, 5, 5],
        &pixels(2, 5, 5),
    )
    .unwrap();
    write_idx(&dir.path().join("train-labels-idx1-ubyte"), &[2], &[1, 2]).unwrap();
    let e = FashionMnist::load(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(e, DataError::Format { .. }), "{e}");
    assert!(e.to_string().contains("5x5"), "{e}");
    // The generic loader takes any size.
    let ds = load_idx_pair(
        &dir.path().join("train-images-idx3-ubyte"),
        &dir.path().join("train-labels-idx1-ubyte"),
        3,
    )
    .unwrap();
    assert_eq!((ds.len(), ds.feature_len(), ds.num_classes()), (2, 25, 3));
}

#[test]
fn files_are_found_raw_gzip_or_in_torchvision_layout_and_scaled() {
    let dir = tempfile::tempdir().unwrap();
    let raw: PathBuf = dir.path().join("MNIST/raw");
    std::fs::create_dir_all(&raw).unwrap();
    let mut px = pixels(2, 28, 28);
    px[0] = 255;
    px[1] = 0;
    px[2] = 51;
    write_idx(&raw.join("t10k-images-idx3-ubyte"), &[2, 28, 28], &px).unwrap();
    write_idx(&raw.join("t10k-labels-idx1-ubyte.gz"), &[2], &[7, 3]).unwrap();
    let ds = Mnist::load(dir.path(), Split::Test).unwrap();
    assert_eq!(ds.len(), 2);
    let s = ds.get(0).unwrap();
    assert_eq!(&s.features[..3], &[1.0, 0.0, 0.2]);
    assert_eq!(ds.class_name(s.label), Some("7"));
    assert_eq!(ds.image_dims().map(|d| d.numel()), Some(784));
}
