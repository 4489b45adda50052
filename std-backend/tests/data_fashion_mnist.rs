//! The built-in Fashion-MNIST subset, and the full data set where Debian's
//! `dataset-fashion-mnist` package installed it.

use ember_nn_std::data::{DataLoader, Dataset, FashionMnist, Source, Split};
use std::path::Path;

#[test]
fn builtin_subset_loads_and_is_balanced() {
    let train = FashionMnist::builtin(Split::Train).unwrap();
    let test = FashionMnist::builtin(Split::Test).unwrap();
    assert_eq!(train.len(), FashionMnist::BUILTIN_TRAIN);
    assert_eq!(test.len(), FashionMnist::BUILTIN_TEST);
    assert_eq!((train.len(), test.len()), (6000, 1000));
    for ds in [&train, &test] {
        assert_eq!(ds.feature_len(), 784);
        assert_eq!(ds.num_classes(), 10);
        let d = ds.image_dims().unwrap();
        assert_eq!((d.channels, d.height, d.width), (1, 28, 28));
        let px = ds.dataset().features();
        assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(px.contains(&1.0) && px.contains(&0.0));
        let counts = ds.dataset().class_counts();
        let n = ds.len();
        for (c, &k) in counts.iter().enumerate() {
            assert!(
                k * 100 >= n * 8 && k * 100 <= n * 12,
                "class {c}: {k} of {n}"
            );
        }
    }
    // The first samples of the full set (the Fashion-MNIST README's
    // examples): an ankle boot opens the training set and the test set.
    assert_eq!(train.get(0).unwrap().label, 9);
    assert_eq!(test.get(0).unwrap().label, 9);
    assert_eq!(test.class_name(9), Some("Ankle Boot"));
    assert_eq!(FashionMnist::CLASSES[0], "T-Shirt");
}

#[test]
fn builtin_directory_reads_like_the_full_set() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let from_dir = FashionMnist::load(&dir, Split::Test).unwrap();
    let builtin = FashionMnist::builtin(Split::Test).unwrap();
    assert_eq!(from_dir.dataset(), builtin.dataset());
}

#[test]
fn falls_back_on_the_subset_only_for_the_default_directory() {
    // No directory named: the default one, or the subset when it lacks the files.
    let (ds, source) = FashionMnist::load_or_builtin(None, Split::Test).unwrap();
    if !FashionMnist::is_available(FashionMnist::default_dir(), Split::Test) {
        assert_eq!(source, Source::Builtin);
        assert_eq!(ds.len(), 1000);
        assert!(source.to_string().contains("built-in"));
    }
    // A directory the user named is read from, or is an error naming what is missing.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let (_, source) = FashionMnist::load_or_builtin(Some(&dir), Split::Train).unwrap();
    assert_eq!(source, Source::Full(dir));
    let empty = tempfile::tempdir().unwrap();
    let e = FashionMnist::load_or_builtin(Some(empty.path()), Split::Test).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: missing t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may also be gzipped, or below raw/)",
            empty.path().display()
        )
    );
    let e =
        FashionMnist::load_or_builtin(Some(Path::new("/no/such/dir")), Split::Test).unwrap_err();
    assert_eq!(e.to_string(), "/no/such/dir: no such directory");
}

#[test]
fn check_dir_names_every_missing_file_of_the_splits() {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    std::fs::copy(
        src.join("t10k-images-idx3-ubyte.gz"),
        d.path().join("t10k-images-idx3-ubyte.gz"),
    )
    .unwrap();
    FashionMnist::check_dir(d.path(), &[]).unwrap();
    let e = FashionMnist::check_dir(d.path(), &[Split::Train, Split::Test]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(
            "missing train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-labels-idx1-ubyte"
        ),
        "{msg}"
    );
    assert!(!msg.contains("t10k-images"), "{msg}");
}

#[test]
fn a_loader_over_the_subset() {
    let train = FashionMnist::builtin(Split::Train).unwrap();
    let mut loader = DataLoader::new(train, 64)
        .shuffle(true)
        .seed(0)
        .drop_last(true);
    assert_eq!(loader.len(), 6000 / 64);
    let mut n = 0;
    for b in loader.iter() {
        assert_eq!(b.features.len(), 64 * 784);
        n += b.len();
    }
    assert_eq!(n, 6000 / 64 * 64);
}

#[test]
fn full_fashion_mnist_when_installed() {
    let dir = FashionMnist::default_dir();
    if !FashionMnist::is_available(dir, Split::Train)
        || !FashionMnist::is_available(dir, Split::Test)
    {
        eprintln!(
            "skipped: Fashion-MNIST is not installed in {} (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let (train, source) = FashionMnist::load_or_builtin(None, Split::Train).unwrap();
    assert_eq!(source, Source::Full(dir.to_path_buf()));
    let test = FashionMnist::load(dir, Split::Test).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(test.len(), 10_000);
    assert_eq!(train.dataset().class_counts(), vec![6000; 10]);
    assert_eq!(test.dataset().class_counts(), vec![1000; 10]);

    // MEAN and STD are the training pixels' statistics.
    let px = train.dataset().features();
    let n = px.len() as f64;
    let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = px
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        (mean - f64::from(FashionMnist::MEAN)).abs() < 5e-4,
        "{mean}"
    );
    assert!(
        (var.sqrt() - f64::from(FashionMnist::STD)).abs() < 5e-4,
        "{}",
        var.sqrt()
    );

    // The built-in subset is the start of the full set.
    let sub = FashionMnist::builtin(Split::Test).unwrap();
    assert_eq!(
        sub.dataset().features(),
        &test.dataset().features()[..1000 * 784]
    );
    assert_eq!(sub.dataset().labels(), &test.dataset().labels()[..1000]);
}
