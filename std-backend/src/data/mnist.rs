//! MNIST and Fashion-MNIST from their IDX files, and a built-in
//! Fashion-MNIST subset that needs no download.

use super::dataset::{Dataset, ImageDims, Sample, TensorDataset};
use super::error::{DataError, Result};
use super::idx::{self, IdxImages};
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which part of a data set: the training or the test samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training set (60 000 samples for MNIST and Fashion-MNIST).
    Train,
    /// The test set (10 000 samples).
    Test,
}

impl Split {
    /// The prefix of the split's file names: `train` or `t10k`.
    pub const fn file_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The base names of the split's image and label files, without `.gz`.
    pub const fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Where [`FashionMnist::load_or_builtin`] found its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The full data set, from this directory.
    Full(PathBuf),
    /// The subset built into the library.
    Builtin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Full(dir) => write!(f, "Fashion-MNIST from {}", dir.display()),
            Source::Builtin => write!(
                f,
                "the built-in Fashion-MNIST subset ({} training and {} test images)",
                FashionMnist::BUILTIN_TRAIN,
                FashionMnist::BUILTIN_TEST
            ),
        }
    }
}

/// Finds a file of a MNIST-like data set under `dir`: `NAME.gz` or `NAME`,
/// directly in `dir`, in `dir/raw`, or in `dir/<sub>/raw` (torchvision's
/// layout, `sub` being `FashionMNIST` or `MNIST`); the dotted spelling
/// `train-images.idx3-ubyte` is also accepted.
fn find_file(dir: &Path, sub: &str, name: &str) -> Result<PathBuf> {
    let dotted = name.replacen("-idx", ".idx", 1);
    let mut tried = Vec::new();
    for prefix in ["".to_string(), "raw/".to_string(), format!("{sub}/raw/")] {
        for base in [name, dotted.as_str()] {
            for ext in [".gz", ""] {
                let rel = format!("{prefix}{base}{ext}");
                let p = dir.join(&rel);
                if p.is_file() {
                    return Ok(p);
                }
                tried.push(rel);
            }
        }
    }
    Err(DataError::NotFound {
        dir: dir.to_path_buf(),
        file: name.to_string(),
        subdir: sub.to_string(),
        tried,
    })
}

/// Builds a data set from decoded IDX images and labels: pixels scaled to
/// `[0, 1]` (torchvision's `ToTensor`), labels checked against
/// `num_classes`. The paths name the files in errors.
fn assemble(
    images_path: &Path,
    images: IdxImages,
    labels_path: &Path,
    labels: Vec<u8>,
    num_classes: usize,
    size: Option<(usize, usize)>,
) -> Result<TensorDataset> {
    if let Some((rows, cols)) = size {
        if (images.rows, images.cols) != (rows, cols) {
            return Err(DataError::Format {
                path: images_path.to_path_buf(),
                what: format!(
                    "images are {}x{}, expected {rows}x{cols}",
                    images.rows, images.cols
                ),
            });
        }
    }
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= num_classes)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            index,
            label: usize::from(label),
            num_classes,
        });
    }
    let features: Vec<f32> = images
        .pixels
        .par_iter()
        .with_min_len(1 << 14)
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    let labels = labels.into_iter().map(usize::from).collect();
    TensorDataset::new(features, labels, images.rows * images.cols, num_classes)?
        .with_image_dims(ImageDims::new(1, images.rows, images.cols))
}

/// Reads an IDX image file and its label file (each raw or gzip) into a data
/// set with pixels scaled to `[0, 1]`. The two are decoded in parallel.
///
/// Errors name the file at fault: unreadable, truncated or corrupt gzip,
/// wrong magic number, truncated data, different numbers of images and
/// labels, a label not below `num_classes`.
pub fn load_idx_pair(
    images_path: &Path,
    labels_path: &Path,
    num_classes: usize,
) -> Result<TensorDataset> {
    let (images, labels) = rayon::join(
        || idx::read_idx_images(images_path),
        || idx::read_idx_labels(labels_path),
    );
    assemble(
        images_path,
        images?,
        labels_path,
        labels?,
        num_classes,
        None,
    )
}

fn load_split(dir: &Path, sub: &str, split: Split, classes: usize) -> Result<TensorDataset> {
    let (img, lbl) = split.file_names();
    let images_path = find_file(dir, sub, img)?;
    let labels_path = find_file(dir, sub, lbl)?;
    let (images, labels) = rayon::join(
        || idx::read_idx_images(&images_path),
        || idx::read_idx_labels(&labels_path),
    );
    assemble(
        &images_path,
        images?,
        &labels_path,
        labels?,
        classes,
        Some((28, 28)),
    )
}

macro_rules! mnist_like {
    ($name:ident) => {
        impl $name {
            /// The split loaded.
            pub fn split(&self) -> Split {
                self.split
            }

            /// The samples as an in-memory data set.
            pub fn dataset(&self) -> &TensorDataset {
                &self.data
            }

            /// The in-memory data set, giving this one up.
            pub fn into_dataset(self) -> TensorDataset {
                self.data
            }
        }

        impl Dataset for $name {
            fn len(&self) -> usize {
                self.data.len()
            }
            fn feature_len(&self) -> usize {
                self.data.feature_len()
            }
            fn num_classes(&self) -> usize {
                self.data.num_classes()
            }
            fn get(&self, i: usize) -> Option<Sample<'_>> {
                self.data.get(i)
            }
            fn image_dims(&self) -> Option<ImageDims> {
                self.data.image_dims()
            }
            fn class_name(&self, class: usize) -> Option<&str> {
                $name::CLASSES.get(class).copied()
            }
        }
    };
}

/// Zalando Research's Fashion-MNIST: 28×28 grey-scale images of clothing in
/// 10 classes, 60 000 for training and 10 000 for testing. Each sample's 784
/// features are the pixels scaled to `[0, 1]`, row by row.
///
/// ```
/// use ember_nn_std::data::{Dataset, FashionMnist, Split};
///
/// // The full set where installed (`apt-get install dataset-fashion-mnist`),
/// // otherwise the subset built into the library.
/// let (test, source) = FashionMnist::load_or_builtin(None, Split::Test)?;
/// println!("using {source}");
/// assert_eq!(test.feature_len(), 784);
/// let sample = test.get(0).unwrap();
/// assert_eq!(test.class_name(sample.label), Some("Ankle Boot"));
/// # Ok::<(), ember_nn_std::data::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct FashionMnist {
    data: TensorDataset,
    split: Split,
}

const BUILTIN_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz");
const BUILTIN_TRAIN_LABELS: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz");
const BUILTIN_TEST_IMAGES: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz");
const BUILTIN_TEST_LABELS: &[u8] =
    include_bytes!("../../data/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz");

impl FashionMnist {
    /// The class names, by label (as in PyTorch's data tutorial).
    pub const CLASSES: [&'static str; 10] = [
        "T-Shirt",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle Boot",
    ];

    /// Where Debian's `dataset-fashion-mnist` package puts the files.
    pub const DEFAULT_DIR: &'static str = "/usr/share/datasets/fashion-mnist";

    /// The mean of the training set's pixels in `[0, 1]`, for
    /// [`Normalize`](super::transform::Normalize).
    pub const MEAN: f32 = 0.2860;
    /// The standard deviation of the training set's pixels in `[0, 1]`.
    pub const STD: f32 = 0.3530;

    /// The number of training images in the built-in subset (the first ones
    /// of the full training set).
    pub const BUILTIN_TRAIN: usize = 6000;
    /// The number of test images in the built-in subset (the first ones of
    /// the full test set).
    pub const BUILTIN_TEST: usize = 1000;

    /// [`DEFAULT_DIR`](Self::DEFAULT_DIR) as a path.
    pub fn default_dir() -> &'static Path {
        Path::new(Self::DEFAULT_DIR)
    }

    /// Loads a split from `dir`, which holds `train-images-idx3-ubyte.gz`,
    /// `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` and
    /// `t10k-labels-idx1-ubyte.gz` (or the same uncompressed, or in
    /// torchvision's `FashionMNIST/raw/` below `dir`).
    pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<Self> {
        let data = load_split(dir.as_ref(), "FashionMNIST", split, 10)?;
        Ok(FashionMnist { data, split })
    }

    /// Whether both files of `split` are in `dir` (they may still be
    /// corrupt).
    pub fn is_available(dir: impl AsRef<Path>, split: Split) -> bool {
        let (img, lbl) = split.file_names();
        let dir = dir.as_ref();
        find_file(dir, "FashionMNIST", img).is_ok() && find_file(dir, "FashionMNIST", lbl).is_ok()
    }

    /// The subset built into the library: the first
    /// [`BUILTIN_TRAIN`](Self::BUILTIN_TRAIN) training or
    /// [`BUILTIN_TEST`](Self::BUILTIN_TEST) test images of the full set.
    pub fn builtin(split: Split) -> Result<Self> {
        let (images, labels) = match split {
            Split::Train => (BUILTIN_TRAIN_IMAGES, BUILTIN_TRAIN_LABELS),
            Split::Test => (BUILTIN_TEST_IMAGES, BUILTIN_TEST_LABELS),
        };
        let (img_name, lbl_name) = split.file_names();
        let images_path = PathBuf::from(format!("<built-in>/{img_name}.gz"));
        let labels_path = PathBuf::from(format!("<built-in>/{lbl_name}.gz"));
        let decode = |path: &Path, bytes: &[u8]| idx::decode_maybe_gz(path, bytes.to_vec());
        let images = idx::parse_idx_images(&images_path, &decode(&images_path, images)?)?;
        let labels = idx::parse_idx_labels(&labels_path, &decode(&labels_path, labels)?)?;
        let data = assemble(
            &images_path,
            images,
            &labels_path,
            labels,
            10,
            Some((28, 28)),
        )?;
        Ok(FashionMnist { data, split })
    }

    /// Checks that `dir` holds the files of every split in `splits`, before
    /// anything is read: an error names the directory if it does not exist,
    /// or every file it lacks.
    pub fn check_dir(dir: impl AsRef<Path>, splits: &[Split]) -> Result<()> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(DataError::NoDirectory {
                dir: dir.to_path_buf(),
            });
        }
        let files: Vec<String> = splits
            .iter()
            .flat_map(|s| {
                let (img, lbl) = s.file_names();
                [img, lbl]
            })
            .filter(|name| find_file(dir, "FashionMNIST", name).is_err())
            .map(str::to_string)
            .collect();
        if files.is_empty() {
            Ok(())
        } else {
            Err(DataError::Missing {
                dir: dir.to_path_buf(),
                files,
            })
        }
    }

    /// With `Some(dir)`, the split from `dir`, whose files must be there
    /// ([`check_dir`](Self::check_dir): a directory the user named that is
    /// missing or incomplete is an error). With `None`, the full data set
    /// when its files are in [`DEFAULT_DIR`](Self::DEFAULT_DIR), otherwise
    /// the [built-in subset](Self::builtin); the [`Source`] says which.
    ///
    /// Files that are there but cannot be read or are corrupt are an error,
    /// not a reason to fall back.
    pub fn load_or_builtin(dir: Option<&Path>, split: Split) -> Result<(Self, Source)> {
        if let Some(dir) = dir {
            Self::check_dir(dir, &[split])?;
            return Ok((Self::load(dir, split)?, Source::Full(dir.to_path_buf())));
        }
        let dir = Self::default_dir();
        if Self::is_available(dir, split) {
            Ok((Self::load(dir, split)?, Source::Full(dir.to_path_buf())))
        } else {
            Ok((Self::builtin(split)?, Source::Builtin))
        }
    }
}

mnist_like!(FashionMnist);

/// The original MNIST handwritten digits: 28×28 grey-scale images of the
/// digits 0 to 9, in the same IDX files as [`FashionMnist`].
#[derive(Clone, Debug)]
pub struct Mnist {
    data: TensorDataset,
    split: Split,
}

impl Mnist {
    /// The class names, by label.
    pub const CLASSES: [&'static str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

    /// Loads a split from `dir`, laid out as for [`FashionMnist::load`]
    /// (torchvision's subdirectory being `MNIST/raw/`).
    pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<Self> {
        let data = load_split(dir.as_ref(), "MNIST", split, 10)?;
        Ok(Mnist { data, split })
    }
}

mnist_like!(Mnist);
