//! Writes the built-in Fashion-MNIST subset: the first 6000 training and
//! 1000 test images (and labels) of the full data set, as gzip-compressed
//! IDX files, and prints each class's count.
//!
//! ```text
//! apt-get install dataset-fashion-mnist
//! cargo run -p ember-nn-std --example make_subset [SOURCE_DIR [OUT_DIR]]
//! ```
//!
//! `SOURCE_DIR` defaults to `/usr/share/datasets/fashion-mnist`, `OUT_DIR`
//! to `std-backend/data/fashion-mnist-subset`. The output is the same on
//! every run (gzip at the best compression, no time stamp).

use ember_nn_std::data::idx::{read_idx, write_idx};
use ember_nn_std::data::{DataError, FashionMnist, Split};
use std::path::{Path, PathBuf};

fn main() -> Result<(), DataError> {
    let mut args = std::env::args_os().skip(1);
    let src = args
        .next()
        .map_or_else(|| FashionMnist::default_dir().to_path_buf(), PathBuf::from);
    let out = args.next().map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).map_err(|source| DataError::Write {
        path: out.clone(),
        source,
    })?;
    for (split, n) in [
        (Split::Train, FashionMnist::BUILTIN_TRAIN),
        (Split::Test, FashionMnist::BUILTIN_TEST),
    ] {
        let (images, labels) = split.file_names();
        for name in [images, labels] {
            let file = format!("{name}.gz");
            let a = read_idx(&src.join(&file))?;
            let mut dims = a.dims.clone();
            let per_item: usize = dims[1..].iter().product();
            dims[0] = n.min(dims[0]);
            let dst = out.join(&file);
            write_idx(&dst, &dims, &a.data[..dims[0] * per_item])?;
            let bytes = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
            println!("{}: {:?}, {bytes} bytes", dst.display(), dims);
            if name == labels {
                let mut counts = [0usize; 10];
                for &l in &a.data[..dims[0]] {
                    counts[usize::from(l).min(9)] += 1;
                }
                println!("  {split} class counts: {counts:?}");
            }
        }
    }
    Ok(())
}
