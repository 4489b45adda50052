//! The data layer: data sets, loaders and augmentation for desktop training.
//!
//! - [`Dataset`]: a data set whose samples are borrowed rows of `f32`
//!   features plus a label (and, for regression, float targets);
//!   [`TensorDataset`] holds one in memory.
//! - [`scale::Scaler`]: standardization or min-max scaling fitted on a
//!   training set, kept with a model and folded into its first layer.
//! - [`FashionMnist`] and [`Mnist`] read the IDX files of those data sets
//!   (module [`idx`], raw or gzip); [`FashionMnist::load_or_builtin`] falls
//!   back on a subset built into the library when the full set is not
//!   installed in the default directory (a directory the caller names must
//!   hold the files).
//! - [`csv::load_csv`] reads numeric features and a label column from a CSV
//!   file; [`table::read_table`] reads CSV (plain or gzipped) and NumPy
//!   (`.npy`, `.npz`) files into a [`table::Table`] of named columns;
//!   [`table::Table::classify`] makes a classification data set of them,
//!   [`table::Table::regress`] a regression's and
//!   [`table::Table::reconstruct`] an autoencoder's.
//! - [`split::stratified_split`]: a seeded, shuffled split that keeps every
//!   class's share in both parts (a validation or test set).
//! - [`DataLoader`] cuts a data set into [`MiniBatch`]es: seeded reshuffling
//!   every epoch, [augmentation](transform) in training mode, parallel
//!   assembly and a background thread that prepares the next batches.
//!
//! Every failure is a [`DataError`] that names the file and what is wrong
//! with it; nothing here panics on bad data.
//!
//! ```
//! use ember_nn_std::data::transform::{Compose, Normalize, RandomRotation, RandomShift};
//! use ember_nn_std::data::{DataLoader, Dataset, FashionMnist, Split};
//!
//! let (train, source) = FashionMnist::load_or_builtin(None, Split::Train)?;
//! println!("training on {source}");
//! let mut loader = DataLoader::new(train, 64)
//!     .shuffle(true)
//!     .seed(1)
//!     .augment(Compose::new().then(RandomRotation::new(15.0)).then(RandomShift::new(2)))
//!     .transform(Normalize::new(FashionMnist::MEAN, FashionMnist::STD));
//! let batch = loader.iter().next().unwrap();
//! assert_eq!(batch.features.len(), 64 * 784);
//! assert_eq!(batch.labels.len(), 64);
//! # Ok::<(), ember_nn_std::data::DataError>(())
//! ```

#![deny(missing_docs)]

pub mod csv;
mod dataset;
mod error;
pub mod idx;
mod loader;
mod mnist;
pub mod scale;
pub mod split;
pub mod table;
pub mod transform;

pub use dataset::{Dataset, ImageDims, Sample, TensorDataset};
pub use error::{DataError, Location, Result};
pub use loader::{Batches, DataLoader, LoaderState, MiniBatch};
pub use mnist::{load_idx_pair, FashionMnist, Mnist, Source, Split};
pub use transform::Transform;
