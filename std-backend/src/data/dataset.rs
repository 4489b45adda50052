//! The [`Dataset`] trait and the in-memory [`TensorDataset`].

use super::error::{DataError, Result};
use std::sync::Arc;

/// The layout of a sample's features when they are an image: `channels`
/// planes of `height` rows of `width` pixels, row-major (PyTorch's `C×H×W`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageDims {
    /// Number of channels (1 for grey-scale).
    pub channels: usize,
    /// Rows per channel.
    pub height: usize,
    /// Pixels per row.
    pub width: usize,
}

impl ImageDims {
    /// `channels × height × width`.
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageDims {
            channels,
            height,
            width,
        }
    }

    /// The number of values: `channels · height · width`.
    pub const fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The layout of `len` features that are not an image: one channel of
    /// one row.
    pub const fn row(len: usize) -> Self {
        ImageDims::new(1, 1, len)
    }
}

/// One sample, borrowed from its data set without copying.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The features: a row of the data set's contiguous `[n, feature_len]`
    /// matrix.
    pub features: &'a [f32],
    /// The class index, in `0..num_classes`.
    pub label: usize,
}

/// A classification data set: `len()` samples, each `feature_len()` features
/// (`f32`) and a label in `0..num_classes()`.
///
/// Samples are borrowed (`&[f32]`), so an in-memory data set hands them out
/// without copying; the [`DataLoader`](super::DataLoader) copies them once,
/// into a batch.
pub trait Dataset: Send + Sync {
    /// The number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of features of every sample.
    fn feature_len(&self) -> usize;

    /// The number of classes; every label is below it.
    fn num_classes(&self) -> usize;

    /// Sample `i`, or `None` when `i >= len()`. Its features have
    /// `feature_len()` values.
    fn get(&self, i: usize) -> Option<Sample<'_>>;

    /// The features' layout when they are an image (used by the spatial
    /// [transforms](super::transform)); `None` for a plain feature vector.
    fn image_dims(&self) -> Option<ImageDims> {
        None
    }

    /// The name of class `class`, when the data set has names.
    fn class_name(&self, class: usize) -> Option<&str> {
        let _ = class;
        None
    }

    /// The number of float targets of every sample: 0 for a classification
    /// data set (the label is its target), 1 or more for regression and
    /// reconstruction ([`TensorDataset::regression`]).
    fn target_len(&self) -> usize {
        0
    }

    /// The float targets of sample `i` (`target_len()` values), or `None`
    /// when `i >= len()` or the data set has none.
    fn target(&self, i: usize) -> Option<&[f32]> {
        let _ = i;
        None
    }
}

macro_rules! forward_dataset {
    ($($ty:ty),*) => {$(
        impl<D: Dataset + ?Sized> Dataset for $ty {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn feature_len(&self) -> usize {
                (**self).feature_len()
            }
            fn num_classes(&self) -> usize {
                (**self).num_classes()
            }
            fn get(&self, i: usize) -> Option<Sample<'_>> {
                (**self).get(i)
            }
            fn image_dims(&self) -> Option<ImageDims> {
                (**self).image_dims()
            }
            fn class_name(&self, class: usize) -> Option<&str> {
                (**self).class_name(class)
            }
            fn target_len(&self) -> usize {
                (**self).target_len()
            }
            fn target(&self, i: usize) -> Option<&[f32]> {
                (**self).target(i)
            }
        }
    )*};
}
forward_dataset!(&D, Box<D>, Arc<D>);

/// A data set held in memory: a contiguous row-major feature matrix
/// `[n, feature_len]` and `n` labels (PyTorch's `TensorDataset`), or, for
/// regression, `n` rows of float targets ([`regression`](Self::regression)).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDataset {
    features: Vec<f32>,
    labels: Vec<usize>,
    feature_len: usize,
    num_classes: usize,
    image_dims: Option<ImageDims>,
    class_names: Vec<String>,
    /// Row-major `[n, target_len]`; empty for classification.
    targets: Vec<f32>,
    target_len: usize,
}

impl TensorDataset {
    /// A data set of `labels.len()` samples whose features are the rows of
    /// `features` (`labels.len() × feature_len` values).
    ///
    /// Fails when the lengths disagree or a label is not below
    /// `num_classes`.
    pub fn new(
        features: Vec<f32>,
        labels: Vec<usize>,
        feature_len: usize,
        num_classes: usize,
    ) -> Result<Self> {
        let expected = labels.len().checked_mul(feature_len);
        if expected != Some(features.len()) {
            return Err(DataError::Invalid(format!(
                "{} labels of {feature_len} features need {} values, found {}",
                labels.len(),
                expected.map_or_else(|| "too many".to_string(), |e| e.to_string()),
                features.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= num_classes) {
            return Err(DataError::Invalid(format!(
                "label {l} of sample {i} is out of range ({num_classes} classes)"
            )));
        }
        Ok(TensorDataset {
            features,
            labels,
            feature_len,
            num_classes,
            image_dims: None,
            class_names: Vec::new(),
            targets: Vec::new(),
            target_len: 0,
        })
    }

    /// A regression data set: the rows of `features` (`feature_len`
    /// values each) and as many rows of `targets` (`target_len` values
    /// each), which the [`DataLoader`](super::DataLoader) hands out as
    /// [`MiniBatch::targets`](super::MiniBatch::targets). Every label is 0
    /// of one class, so that what splits and loads a classification set
    /// serves it unchanged. An autoencoder's data set is its features as
    /// the targets.
    ///
    /// Fails when the lengths disagree, `target_len` is 0, or a value is
    /// NaN or infinite (naming the row).
    pub fn regression(
        features: Vec<f32>,
        targets: Vec<f32>,
        feature_len: usize,
        target_len: usize,
    ) -> Result<Self> {
        if target_len == 0 {
            return Err(DataError::Invalid(
                "a regression data set needs at least one target".into(),
            ));
        }
        let rows = targets.len() / target_len;
        if rows * target_len != targets.len() {
            return Err(DataError::Invalid(format!(
                "{} target values are not rows of {target_len}",
                targets.len()
            )));
        }
        let mut set = TensorDataset::new(features, vec![0; rows], feature_len, 1)?;
        if let Some(i) = targets.iter().position(|v| !v.is_finite()) {
            return Err(DataError::Invalid(format!(
                "target {} of sample {} is {}",
                i % target_len,
                i / target_len,
                targets[i]
            )));
        }
        set.targets = targets;
        set.target_len = target_len;
        Ok(set)
    }

    /// The target matrix, row-major `[len, target_len]` (empty for a
    /// classification data set).
    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Declares the features to be images of the given layout, which must
    /// have `feature_len` values.
    pub fn with_image_dims(mut self, dims: ImageDims) -> Result<Self> {
        if dims.numel() != self.feature_len {
            return Err(DataError::Invalid(format!(
                "image of {}x{}x{} = {} values does not match {} features",
                dims.channels,
                dims.height,
                dims.width,
                dims.numel(),
                self.feature_len
            )));
        }
        self.image_dims = Some(dims);
        Ok(self)
    }

    /// Names the classes; there must be `num_classes` names.
    pub fn with_class_names<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() != self.num_classes {
            return Err(DataError::Invalid(format!(
                "{} class names for {} classes",
                names.len(),
                self.num_classes
            )));
        }
        self.class_names = names;
        Ok(self)
    }

    /// The feature matrix, row-major `[len, feature_len]`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// The feature matrix, to change in place (scaling).
    pub fn features_mut(&mut self) -> &mut [f32] {
        &mut self.features
    }

    /// The target matrix, to change in place (empty for a classification
    /// data set).
    pub fn targets_mut(&mut self) -> &mut [f32] {
        &mut self.targets
    }

    /// The labels.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The class names (empty when the classes are unnamed).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The data set made of the samples at `indices`, in that order (a
    /// train/validation split, a subset...). Fails on an index out of range.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let d = self.feature_len;
        let mut features = Vec::with_capacity(indices.len() * d);
        let mut labels = Vec::with_capacity(indices.len());
        let mut targets = Vec::with_capacity(indices.len() * self.target_len);
        for &i in indices {
            let sample = self.get(i).ok_or_else(|| {
                DataError::Invalid(format!(
                    "index {i} is out of range ({} samples)",
                    self.len()
                ))
            })?;
            features.extend_from_slice(sample.features);
            labels.push(sample.label);
            targets.extend_from_slice(self.target(i).unwrap_or_default());
        }
        Ok(TensorDataset {
            features,
            labels,
            targets,
            ..self.empty_like()
        })
    }

    /// Splits off the last `len() - at` samples: `(first at, rest)`;
    /// `at` is clamped to `len()`.
    pub fn split_at(mut self, at: usize) -> (Self, Self) {
        let at = at.min(self.labels.len());
        let rest = TensorDataset {
            features: self.features.split_off(at * self.feature_len),
            labels: self.labels.split_off(at),
            targets: self
                .targets
                .split_off((at * self.target_len).min(self.targets.len())),
            ..self.empty_like()
        };
        (self, rest)
    }

    /// The features and the labels, giving the data set up.
    pub fn into_parts(self) -> (Vec<f32>, Vec<usize>) {
        (self.features, self.labels)
    }

    fn empty_like(&self) -> Self {
        TensorDataset {
            features: Vec::new(),
            labels: Vec::new(),
            feature_len: self.feature_len,
            num_classes: self.num_classes,
            image_dims: self.image_dims,
            class_names: self.class_names.clone(),
            targets: Vec::new(),
            target_len: self.target_len,
        }
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn feature_len(&self) -> usize {
        self.feature_len
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn get(&self, i: usize) -> Option<Sample<'_>> {
        let label = *self.labels.get(i)?;
        let start = i * self.feature_len;
        let features = self.features.get(start..start + self.feature_len)?;
        Some(Sample { features, label })
    }

    fn image_dims(&self) -> Option<ImageDims> {
        self.image_dims
    }

    fn class_name(&self, class: usize) -> Option<&str> {
        self.class_names.get(class).map(String::as_str)
    }

    fn target_len(&self) -> usize {
        self.target_len
    }

    fn target(&self, i: usize) -> Option<&[f32]> {
        let t = self.target_len;
        self.targets
            .get(i.checked_mul(t)?..i.checked_mul(t)?.checked_add(t)?)
            .filter(|_| t > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TensorDataset {
        TensorDataset::new((0..12).map(|v| v as f32).collect(), vec![0, 1, 2, 1], 3, 3).unwrap()
    }

    #[test]
    fn rows_are_borrowed_in_order() {
        let ds = small();
        assert_eq!(ds.len(), 4);
        let s = ds.get(2).unwrap();
        assert_eq!(s.features, &[6.0, 7.0, 8.0]);
        assert_eq!(s.label, 2);
        assert!(ds.get(4).is_none());
        assert_eq!(ds.class_counts(), vec![1, 2, 1]);
    }

    #[test]
    fn bad_shapes_and_labels_are_errors() {
        assert!(matches!(
            TensorDataset::new(vec![0.0; 5], vec![0, 0], 3, 1),
            Err(DataError::Invalid(_))
        ));
        let e = TensorDataset::new(vec![0.0; 6], vec![0, 3], 3, 3).unwrap_err();
        assert!(e.to_string().contains("label 3 of sample 1"), "{e}");
        assert!(small().with_image_dims(ImageDims::new(1, 2, 2)).is_err());
        assert!(small().with_class_names(["a", "b"]).is_err());
    }

    #[test]
    fn select_and_split() {
        let ds = small().with_class_names(["a", "b", "c"]).unwrap();
        let sub = ds.select(&[3, 0]).unwrap();
        assert_eq!(sub.features(), &[9.0, 10.0, 11.0, 0.0, 1.0, 2.0]);
        assert_eq!(sub.labels(), &[1, 0]);
        assert_eq!(sub.class_name(2), Some("c"));
        assert!(ds.select(&[4]).is_err());
        let (a, b) = ds.split_at(1);
        assert_eq!((a.len(), b.len()), (1, 3));
        assert_eq!(b.get(0).unwrap().features, &[3.0, 4.0, 5.0]);
    }

    #[test]
    fn regression_targets_follow_their_rows() {
        let ds = TensorDataset::regression(
            (0..8).map(|v| v as f32).collect(),
            vec![0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5],
            2,
            2,
        )
        .unwrap();
        assert_eq!((ds.len(), ds.target_len(), ds.num_classes()), (4, 2, 1));
        assert_eq!(ds.target(1), Some(&[1.5, -1.5][..]));
        assert_eq!(ds.target(4), None);
        let sub = ds.select(&[3, 0]).unwrap();
        assert_eq!(sub.targets(), &[3.5, -3.5, 0.5, -0.5]);
        let (a, b) = ds.split_at(3);
        assert_eq!((a.targets().len(), b.targets()), (6, &[3.5, -3.5][..]));
        assert_eq!(small().target(0), None);
        let e = TensorDataset::regression(vec![0.0; 2], vec![1.0, f32::NAN], 1, 1).unwrap_err();
        assert!(e.to_string().contains("target 0 of sample 1 is NaN"), "{e}");
        assert!(TensorDataset::regression(vec![0.0; 2], vec![1.0; 3], 1, 2).is_err());
        assert!(TensorDataset::regression(vec![0.0; 2], vec![], 1, 0).is_err());
    }
}
