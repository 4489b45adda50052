//! The FashionMNIST subsets of the seed examples: the first `n` samples of
//! a split, from the installed set (/usr/share/datasets/fashion-mnist/)
//! or the subset built into ember-nn-std, the source printed.

use ember_nn_core::{Error, Result};
use ember_nn_std::data::{Dataset, FashionMnist, Split, TensorDataset};

/// The first `n` samples of `split`.
pub fn fashion_mnist(split: Split, n: usize) -> Result<TensorDataset> {
    let fail = |e: ember_nn_std::data::DataError| {
        eprintln!("{e}");
        Error::InvalidArgument {
            what: "FashionMNIST could not be read",
        }
    };
    let (data, source) = FashionMnist::load_or_builtin(None, split).map_err(fail)?;
    println!("{split}: {source}");
    let data = data.into_dataset();
    Ok(if data.len() > n {
        data.split_at(n).0
    } else {
        data
    })
}
