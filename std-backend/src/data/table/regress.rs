//! A table's columns as a regression (or autoencoder) data set, and the
//! task a target column suggests.

use super::{Column, Table};
use crate::config::TaskKind;
use crate::data::dataset::TensorDataset;
use crate::data::error::{DataError, Result};

/// A regression data set made of a [`Table`]'s columns (float targets),
/// and which columns they were: [`Table::regress`], [`Table::reconstruct`].
#[derive(Clone, Debug)]
pub struct Regressed {
    /// The samples: the feature columns as `f32`, the target columns as
    /// their float [`targets`](TensorDataset::targets) (an autoencoder's
    /// are its features).
    pub dataset: TensorDataset,
    /// The target columns' indices (the features' for an autoencoder).
    pub targets: Vec<usize>,
    /// The target columns' names.
    pub target_names: Vec<String>,
    /// The feature columns' indices, in order.
    pub features: Vec<usize>,
    /// The feature columns' names.
    pub feature_names: Vec<String>,
    /// Whether the columns are named by the file (so a test file's are
    /// found by name).
    pub by_name: bool,
}

/// The most distinct integers of a target column that
/// [`Table::infer_task`] takes for classes whatever the rows.
pub const MAX_INFERRED_CLASSES: usize = 20;

/// The task a target column suggests, and why, in words:
/// [`Table::infer_task`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inferred {
    /// Classify or regress.
    pub task: TaskKind,
    /// Why: ``target column `quality` holds 6 distinct integers``.
    pub reason: String,
}

impl Table {
    /// The task the `target` column suggests: numbers that are not all
    /// integers are a regression's targets, and so are integers of more
    /// distinct values than [`MAX_INFERRED_CLASSES`] and than a tenth of
    /// the rows (measurements in whole units, not classes); names, bools
    /// and other integers are classes. Errors as
    /// [`classify`](Self::classify)'s for a missing column or an empty or
    /// non-finite cell.
    pub fn infer_task(&self, target: &Column) -> Result<Inferred> {
        let t = self.resolve(target)?;
        let name = &self.names[t];
        match self.label_names(t) {
            Ok((names, kind)) => {
                let distinct: std::collections::BTreeSet<&str> =
                    names.iter().map(String::as_str).collect();
                let n = distinct.len();
                if kind == super::LabelKind::Integers
                    && n > MAX_INFERRED_CLASSES
                    && n > self.rows / 10
                {
                    return Ok(Inferred {
                        task: TaskKind::Regress,
                        reason: format!(
                            "target column `{name}` holds {n} distinct integers in {} rows: measurements, not classes (--task classify says otherwise)",
                            self.rows
                        ),
                    });
                }
                let what = match kind {
                    super::LabelKind::Strings => "distinct strings",
                    super::LabelKind::Integers => "distinct integers",
                    super::LabelKind::Bools => "bools",
                };
                Ok(Inferred {
                    task: TaskKind::Classify,
                    reason: format!("target column `{name}` holds {} {what}", distinct.len()),
                })
            }
            Err(DataError::NotClasses { example, at, .. }) => Ok(Inferred {
                task: TaskKind::Regress,
                reason: format!(
                    "target column `{name}` holds numbers that are not integers ({example} at {at})"
                ),
            }),
            Err(e) => Err(e),
        }
    }

    /// The regression data set of the `targets` columns (one or several,
    /// each a finite number in every row) and the `features` columns
    /// (`None`: every column that is no target). Errors: a column that is
    /// not there, a target among the features, a cell that is not a finite
    /// number ([`DataError::BadCell`], naming its line, column and text), no
    /// rows.
    pub fn regress(&self, targets: &[Column], features: Option<&[Column]>) -> Result<Regressed> {
        let ts: Vec<usize> = targets
            .iter()
            .map(|c| self.resolve(c))
            .collect::<Result<_>>()?;
        let cols = self.feature_columns(&ts, features)?;
        self.regressed(ts, cols)
    }

    /// An autoencoder's data set: the `features` columns (`None`: every
    /// column) as both features and targets.
    pub fn reconstruct(&self, features: Option<&[Column]>) -> Result<Regressed> {
        let cols = self.feature_columns(&[], features)?;
        self.regressed(cols.clone(), cols)
    }

    fn regressed(&self, ts: Vec<usize>, cols: Vec<usize>) -> Result<Regressed> {
        if self.rows == 0 {
            return Err(self.no_rows());
        }
        let x = self.features(&cols)?;
        let y = self.features(&ts)?;
        let dataset = TensorDataset::regression(x, y, cols.len(), ts.len())?;
        Ok(Regressed {
            dataset,
            target_names: ts.iter().map(|&c| self.names[c].clone()).collect(),
            targets: ts,
            feature_names: cols.iter().map(|&c| self.names[c].clone()).collect(),
            features: cols,
            by_name: self.has_header,
        })
    }

    /// This table (a test file, or rows to evaluate) as a data set of
    /// `train`'s columns: found by name when both files name them, else by
    /// index, as [`classify_like`](Self::classify_like) does.
    pub fn regress_like(&self, train: &Regressed) -> Result<TensorDataset> {
        let cols = self.columns_like(train.by_name, &train.feature_names, &train.features)?;
        let ts = self.columns_like(train.by_name, &train.target_names, &train.targets)?;
        if self.rows == 0 {
            return Err(self.no_rows());
        }
        let x = self.features(&cols)?;
        let y = self.features(&ts)?;
        TensorDataset::regression(x, y, cols.len(), ts.len())
    }
}
