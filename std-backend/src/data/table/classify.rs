//! A table's columns as a classification data set.

use super::{Cell, Column, NumKind, Table};
use crate::data::dataset::TensorDataset;
use crate::data::error::{DataError, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a classification target column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// Names (any cell that is not a number makes every cell a name).
    Strings,
    /// Integers (`3`, `3.0`), numbered in increasing order.
    Integers,
    /// Bools of a NumPy array (`false`, `true`).
    Bools,
}

/// A classification data set made of a [`Table`]'s columns, and which
/// columns they were.
#[derive(Clone, Debug)]
pub struct Classified {
    /// The samples: the feature columns as `f32`, the target as class
    /// indices, the classes' names kept.
    pub dataset: TensorDataset,
    /// The target column's index.
    pub target: usize,
    /// The target column's name.
    pub target_name: String,
    /// The feature columns' indices, in order.
    pub features: Vec<usize>,
    /// The feature columns' names.
    pub feature_names: Vec<String>,
    /// What the target column holds.
    pub kind: LabelKind,
    /// Whether the columns are named by the file (so a test file's are
    /// found by name).
    pub by_name: bool,
}

impl Classified {
    /// The task and why, in a line: ``classify: target column `species`
    /// holds 3 distinct strings``.
    pub fn task(&self) -> String {
        let what = match self.kind {
            LabelKind::Strings => "distinct strings",
            LabelKind::Integers => "distinct integers",
            LabelKind::Bools => "bools",
        };
        format!(
            "classify: target column `{}` holds {} {what}",
            self.target_name,
            self.dataset.class_names().len()
        )
    }
}

/// A label as read: an integer, a name, or a number that is no integer.
enum Label<'a> {
    Int(i64),
    Bool(bool),
    Name(&'a str),
    Fraction(&'a str),
}

/// The largest integer an `f64` holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

fn integral(v: f64) -> Option<i64> {
    (v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT).then_some(v as i64)
}

impl Table {
    /// Another file's columns (`names`, at `indices` there) in this table:
    /// by name when both files name their columns (`by_name`, and this
    /// table has a header) and the name is this file's only column of that
    /// name; else by index.
    pub(super) fn columns_like(
        &self,
        by_name: bool,
        names: &[String],
        indices: &[usize],
    ) -> Result<Vec<usize>> {
        let by_name = by_name && self.has_header;
        names
            .iter()
            .zip(indices)
            .map(|(name, &index)| {
                let unique = self.names.iter().filter(|n| *n == name).count() <= 1;
                self.resolve(&if by_name && unique {
                    Column::name(name.as_str())
                } else {
                    Column::Index(index)
                })
            })
            .collect()
    }

    /// The label at `row` of column `c`, or an error for a missing or
    /// non-finite one.
    fn label(&self, row: usize, c: usize) -> Result<Label<'_>> {
        match self.cell(row, c) {
            Some(Cell::Text(s)) => {
                if let Ok(i) = s.parse::<i64>() {
                    return Ok(Label::Int(i));
                }
                match s.parse::<f64>() {
                    _ if s.is_empty() => Err(self.bad_cell(row, c, s, "missing label")),
                    Ok(v) if !v.is_finite() => {
                        Err(self.bad_cell(row, c, s, "not a finite number (a missing label?)"))
                    }
                    Ok(v) => Ok(integral(v).map_or(Label::Fraction(s), Label::Int)),
                    Err(_) => Ok(Label::Name(s)),
                }
            }
            Some(Cell::Number(v, kind)) => match (kind, integral(v)) {
                (NumKind::Bool, _) => Ok(Label::Bool(v != 0.0)),
                (_, Some(i)) => Ok(Label::Int(i)),
                _ if !v.is_finite() => Err(DataError::NotFinite {
                    path: self.path.clone(),
                    row,
                    column: c,
                    value: v,
                }),
                _ => Ok(Label::Fraction("")),
            },
            None => Err(self.no_such_index(c)),
        }
    }

    /// The class name of every row's label of column `c`, and what they are.
    pub(super) fn label_names(&self, c: usize) -> Result<(Vec<String>, LabelKind)> {
        let mut labels = Vec::with_capacity(self.rows);
        for row in 0..self.rows {
            labels.push(self.label(row, c)?);
        }
        let kind = if labels.iter().any(|l| matches!(l, Label::Name(_))) {
            LabelKind::Strings
        } else if let Some(row) = labels.iter().position(|l| matches!(l, Label::Fraction(_))) {
            let example = match (&labels[row], self.cell(row, c)) {
                (Label::Fraction(s), _) if !s.is_empty() => s.to_string(),
                (_, Some(Cell::Number(v, _))) => v.to_string(),
                _ => String::new(),
            };
            return Err(DataError::NotClasses {
                path: self.path.clone(),
                column: format!("`{}`", self.names[c]),
                example,
                at: self.location(row),
            });
        } else if labels.iter().all(|l| matches!(l, Label::Bool(_))) {
            LabelKind::Bools
        } else {
            LabelKind::Integers
        };
        let names = labels
            .iter()
            .enumerate()
            .map(|(row, l)| match (kind, l) {
                (LabelKind::Strings, _) => match self.cell(row, c) {
                    Some(Cell::Text(s)) => s.to_string(),
                    Some(Cell::Number(v, _)) => v.to_string(),
                    None => String::new(),
                },
                (_, Label::Int(i)) => i.to_string(),
                (_, Label::Bool(b)) => b.to_string(),
                (_, Label::Name(s) | Label::Fraction(s)) => s.to_string(),
            })
            .collect();
        Ok((names, kind))
    }

    /// The feature columns: those given, or every column but the targets.
    pub(super) fn feature_columns(
        &self,
        targets: &[usize],
        features: Option<&[Column]>,
    ) -> Result<Vec<usize>> {
        match features {
            Some(cols) => {
                let cols: Vec<usize> = cols
                    .iter()
                    .map(|c| self.resolve(c))
                    .collect::<Result<_>>()?;
                if let Some(&t) = targets.iter().find(|t| cols.contains(t)) {
                    return Err(DataError::TargetAsFeature {
                        path: self.path.clone(),
                        column: self.names[t].clone(),
                    });
                }
                Ok(cols)
            }
            None => Ok((0..self.width()).filter(|c| !targets.contains(c)).collect()),
        }
    }

    pub(super) fn no_rows(&self) -> DataError {
        DataError::Format {
            path: self.path.clone(),
            what: "no data rows".to_string(),
        }
    }

    /// The classification data set of the `target` column's classes and
    /// the `features` columns (`None`: every other column).
    ///
    /// Integer labels (`3`, `3.0`, or an integer or bool array) are
    /// classes numbered in increasing order, any other text makes every
    /// label a name, numbered in sorted order (as
    /// [`LabelFormat::Names`](crate::data::csv::LabelFormat::Names)); the
    /// data set keeps the names (an integer's is its value). Errors: a column
    /// that is not there, a feature that is not a finite number, an empty or
    /// non-finite label, numbers that are not integers
    /// ([`DataError::NotClasses`]), one class only ([`DataError::OneClass`]),
    /// no rows.
    pub fn classify(&self, target: &Column, features: Option<&[Column]>) -> Result<Classified> {
        let t = self.resolve(target)?;
        let cols = self.feature_columns(&[t], features)?;
        if self.rows == 0 {
            return Err(self.no_rows());
        }
        let x = self.features(&cols)?;
        let (names, kind) = self.label_names(t)?;
        let classes: Vec<String> = match kind {
            LabelKind::Integers => {
                let set: BTreeSet<i64> = names.iter().filter_map(|n| n.parse().ok()).collect();
                set.into_iter().map(|i| i.to_string()).collect()
            }
            _ => {
                let set: BTreeSet<&str> = names.iter().map(String::as_str).collect();
                set.into_iter().map(str::to_string).collect()
            }
        };
        if classes.len() < 2 {
            return Err(DataError::OneClass {
                path: self.path.clone(),
                column: format!("`{}`", self.names[t]),
                class: classes.first().cloned().unwrap_or_default(),
            });
        }
        let index: HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let labels = names.iter().map(|n| index[n.as_str()]).collect();
        let n_classes = classes.len();
        let dataset =
            TensorDataset::new(x, labels, cols.len(), n_classes)?.with_class_names(classes)?;
        Ok(Classified {
            dataset,
            target: t,
            target_name: self.names[t].clone(),
            feature_names: cols.iter().map(|&c| self.names[c].clone()).collect(),
            features: cols,
            kind,
            by_name: self.has_header,
        })
    }

    /// This table (a test file) as a data set of `train`'s columns and
    /// classes: the columns found by name when both files name them (and
    /// the name is not repeated in this header), else by index. A label that is none of `train`'s classes is a
    /// [`DataError::UnseenClass`].
    pub fn classify_like(&self, train: &Classified) -> Result<TensorDataset> {
        let t = self.columns_like(
            train.by_name,
            std::slice::from_ref(&train.target_name),
            &[train.target],
        )?[0];
        let cols = self.columns_like(train.by_name, &train.feature_names, &train.features)?;
        if self.rows == 0 {
            return Err(self.no_rows());
        }
        let x = self.features(&cols)?;
        let known = train.dataset.class_names();
        let index: BTreeMap<&str, usize> = known
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut labels = Vec::with_capacity(self.rows);
        for row in 0..self.rows {
            let name = match (train.kind, self.label(row, t)?) {
                (LabelKind::Strings, _) => match self.cell(row, t) {
                    Some(Cell::Text(s)) => s.to_string(),
                    Some(Cell::Number(v, _)) => v.to_string(),
                    None => String::new(),
                },
                (_, Label::Int(i)) => i.to_string(),
                (_, Label::Bool(b)) => b.to_string(),
                (_, Label::Name(s) | Label::Fraction(s)) => s.to_string(),
            };
            match index.get(name.as_str()) {
                Some(&i) => labels.push(i),
                None => {
                    return Err(DataError::UnseenClass {
                        path: self.path.clone(),
                        at: self.location(row),
                        class: name,
                        known: known.to_vec(),
                    })
                }
            }
        }
        TensorDataset::new(x, labels, cols.len(), known.len())?.with_class_names(known.to_vec())
    }
}
