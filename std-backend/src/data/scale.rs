//! Feature scaling fitted on a training set and kept with the model:
//! standardization or min-max, folded into the first `Linear` layer on
//! export so that the deployed model takes raw features.
//!
//! ```
//! use ember_nn_std::config::ScaleKind;
//! use ember_nn_std::data::scale::Scaler;
//! use ember_nn_std::data::TensorDataset;
//!
//! // Two features; the second is constant (its scale is 1, not 0).
//! let train = TensorDataset::new(vec![1.0, 5.0, 3.0, 5.0], vec![0, 1], 2, 2)?;
//! let s = Scaler::fit(ScaleKind::Standard, &train);
//! assert_eq!(s.offset, [2.0, 5.0]);
//! assert_eq!(s.scale, [1.0, 1.0]);
//! let mut row = [3.0, 7.0];
//! s.apply(&mut row);
//! assert_eq!(row, [1.0, 2.0]);
//! # Ok::<(), ember_nn_std::data::DataError>(())
//! ```

use super::dataset::{Dataset, TensorDataset};
use crate::config::ScaleKind;
use crate::state_dict::NamedTensor;
use serde::{Deserialize, Serialize};

/// A per-feature affine map `x' = (x - offset) / scale`, fitted on a
/// training set: the mean and the (population) standard deviation for
/// [`ScaleKind::Standard`] (scikit-learn's `StandardScaler`), the minimum
/// and the range for [`ScaleKind::Minmax`] (to `[0, 1]`), the identity for
/// [`ScaleKind::None`]. A feature without spread (constant, or a single
/// row) gets a scale of 1, so no value becomes NaN or infinite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// How it was fitted.
    pub kind: ScaleKind,
    /// Subtracted from each feature.
    pub offset: Vec<f32>,
    /// Each feature's difference is divided by it (never 0).
    pub scale: Vec<f32>,
}

impl Scaler {
    /// Fits `kind` on `data`'s features (its rows, every one).
    pub fn fit(kind: ScaleKind, data: &TensorDataset) -> Scaler {
        Self::fit_rows(kind, data.features(), data.feature_len())
    }

    /// Fits `kind` on the rows of `values` (row-major, `width` per row):
    /// a regression's targets, say.
    pub fn fit_rows(kind: ScaleKind, values: &[f32], width: usize) -> Scaler {
        let d = width;
        let n = values.len().checked_div(d).unwrap_or(0);
        let column = |j: usize| {
            values
                .iter()
                .skip(j)
                .step_by(d.max(1))
                .map(|&v| f64::from(v))
        };
        let (offset, scale): (Vec<f32>, Vec<f32>) = (0..d)
            .map(|j| match kind {
                ScaleKind::None => (0.0, 1.0),
                ScaleKind::Standard => {
                    let mean = column(j).sum::<f64>() / n.max(1) as f64;
                    let var =
                        column(j).map(|v| (v - mean) * (v - mean)).sum::<f64>() / n.max(1) as f64;
                    (mean as f32, spread(var.sqrt()))
                }
                ScaleKind::Minmax => {
                    let (lo, hi) =
                        column(j).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
                    if lo > hi {
                        (0.0, 1.0)
                    } else {
                        (lo as f32, spread(hi - lo))
                    }
                }
            })
            .unzip();
        Scaler {
            kind,
            offset,
            scale,
        }
    }

    /// Whether it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.offset.iter().all(|&o| o == 0.0) && self.scale.iter().all(|&s| s == 1.0)
    }

    /// Scales the rows of `features` (row-major, this scaler's width per
    /// row) in place.
    pub fn apply(&self, features: &mut [f32]) {
        let d = self.offset.len().max(1);
        for row in features.chunks_mut(d) {
            for ((v, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                *v = (*v - o) / s;
            }
        }
    }

    /// `data` with its features scaled (an autoencoder's targets, its
    /// features, with them when `targets_too`).
    pub fn transform(&self, mut data: TensorDataset, targets_too: bool) -> TensorDataset {
        self.apply(data.features_mut());
        if targets_too {
            self.apply(data.targets_mut());
        }
        data
    }

    /// The first `Linear` layer's parameters (`weight` `[out, in]` and
    /// `bias` `[out]`, by the names given) with the scaling folded in, so
    /// that the layer takes raw features and computes what it computed on
    /// scaled ones: `W' = W diag(1/scale)`, `b' = b - W (offset / scale)`.
    /// Other tensors are unchanged; `None` when the layer is not there or
    /// its input width is not the scaler's.
    pub fn fold(
        &self,
        params: &[NamedTensor],
        weight: &str,
        bias: &str,
    ) -> Option<Vec<NamedTensor>> {
        let d = self.offset.len();
        let w = params.iter().find(|t| t.name == weight)?;
        let b = params.iter().find(|t| t.name == bias)?;
        if w.shape.len() != 2 || w.shape[1] != d || b.data.len() != w.shape[0] {
            return None;
        }
        let mut w2 = w.data.clone();
        let mut b2 = b.data.clone();
        for (row, bo) in w2.chunks_mut(d.max(1)).zip(&mut b2) {
            let mut shift = 0.0f64;
            for ((wi, o), s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                shift += f64::from(*wi) * f64::from(*o) / f64::from(*s);
                *wi /= s;
            }
            *bo = (f64::from(*bo) - shift) as f32;
        }
        Some(replace(params, weight, w2, bias, b2))
    }
}

impl Scaler {
    /// The last `Linear` layer's parameters with this scaling undone on
    /// its outputs (`weight` `[out, in]`, `bias` `[out]`, by the names
    /// given): a model trained on scaled targets then gives them in their
    /// own units, `y = scale · y' + offset`, row `o` of the weight times
    /// `scale[o]`, `b' = scale · b + offset`. `None` when the layer is not
    /// there or its output width is not the scaler's.
    pub fn unfold_outputs(
        &self,
        params: &[NamedTensor],
        weight: &str,
        bias: &str,
    ) -> Option<Vec<NamedTensor>> {
        let d = self.offset.len();
        let w = params.iter().find(|t| t.name == weight)?;
        let b = params.iter().find(|t| t.name == bias)?;
        if w.shape.len() != 2 || w.shape[0] != d || b.data.len() != d {
            return None;
        }
        let cols = w.shape[1].max(1);
        let mut w2 = w.data.clone();
        let mut b2 = b.data.clone();
        for (o, row) in w2.chunks_mut(cols).enumerate() {
            row.iter_mut().for_each(|v| *v *= self.scale[o]);
            b2[o] = b2[o] * self.scale[o] + self.offset[o];
        }
        Some(replace(params, weight, w2, bias, b2))
    }
}

/// `params` with the data of `weight` and `bias` replaced.
fn replace(
    params: &[NamedTensor],
    weight: &str,
    w: Vec<f32>,
    bias: &str,
    b: Vec<f32>,
) -> Vec<NamedTensor> {
    params
        .iter()
        .map(|t| {
            let data = if t.name == weight {
                w.clone()
            } else if t.name == bias {
                b.clone()
            } else {
                return t.clone();
            };
            NamedTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                data,
            }
        })
        .collect()
}

/// A spread as a scale: itself, or 1 when it is 0 (or not finite).
fn spread(s: f64) -> f32 {
    let s = s as f32;
    if s.is_finite() && s > 0.0 {
        s
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_and_folding_agree_with_scaling_first() {
        let train =
            TensorDataset::new(vec![0.0, 10.0, 4.0, 30.0, 2.0, 20.0], vec![0; 3], 2, 1).unwrap();
        let s = Scaler::fit(ScaleKind::Minmax, &train);
        assert_eq!(
            (s.offset.clone(), s.scale.clone()),
            (vec![0.0, 10.0], vec![4.0, 20.0])
        );
        let t = s.transform(train, false);
        assert_eq!(t.features(), &[0.0, 0.0, 1.0, 1.0, 0.5, 0.5]);
        // A 2 -> 1 layer on scaled inputs, and folded on raw ones.
        let params = vec![
            NamedTensor {
                name: "0.weight".into(),
                shape: vec![1, 2],
                data: vec![0.5, -2.0],
            },
            NamedTensor {
                name: "0.bias".into(),
                shape: vec![1],
                data: vec![0.25],
            },
        ];
        let f = s.fold(&params, "0.weight", "0.bias").unwrap();
        let raw = [3.0f32, 25.0];
        let mut scaled = raw;
        s.apply(&mut scaled);
        let on_scaled = 0.5 * scaled[0] - 2.0 * scaled[1] + 0.25;
        let on_raw = f[0].data[0] * raw[0] + f[0].data[1] * raw[1] + f[1].data[0];
        assert!((on_scaled - on_raw).abs() < 1e-5, "{on_scaled} {on_raw}");
        assert!(s.fold(&params, "1.weight", "1.bias").is_none());
        // Outputs: a target scaled by (y - 2) / 4 comes back in its units.
        let ty = Scaler {
            kind: ScaleKind::Standard,
            offset: vec![2.0],
            scale: vec![4.0],
        };
        let u = ty.unfold_outputs(&params, "0.weight", "0.bias").unwrap();
        let y = u[0].data[0] * scaled[0] + u[0].data[1] * scaled[1] + u[1].data[0];
        assert!((y - (4.0 * on_scaled + 2.0)).abs() < 1e-5);
        let none = Scaler::fit(ScaleKind::None, &t);
        assert!(none.is_identity());
    }

    #[test]
    fn a_constant_or_single_row_gives_no_nan() {
        let one = TensorDataset::new(vec![3.0, 4.0], vec![0], 2, 1).unwrap();
        for kind in [ScaleKind::Standard, ScaleKind::Minmax] {
            let s = Scaler::fit(kind, &one);
            assert_eq!(s.scale, [1.0, 1.0]);
            let t = s.transform(one.clone(), false);
            assert!(t.features().iter().all(|v| v.is_finite()));
        }
    }
}
