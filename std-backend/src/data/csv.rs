//! Classification data from CSV files: numeric feature columns and one label
//! column.
//!
//! The text is read by the [`csv`](https://docs.rs/csv) crate (see
//! [`table`](super::table), which reads `.csv.gz` and NumPy files too): a
//! field may be quoted with `"` (a doubled `""` inside being one quote) and
//! hold the delimiter or line breaks; CRLF and a UTF-8 byte-order mark are
//! understood, blank lines skipped and cells trimmed. An unterminated quote
//! runs to the end of the file, so it shows as a ragged row.
//!
//! ```no_run
//! use ember_nn_std::data::csv::{load_csv, Column, CsvOptions, LabelFormat};
//! use ember_nn_std::data::Dataset;
//!
//! // iris.csv: sepal_length,sepal_width,petal_length,petal_width,species
//! let opts = CsvOptions::new()
//!     .label(Column::name("species"))
//!     .label_format(LabelFormat::Names);
//! let iris = load_csv("iris.csv", &opts)?;
//! assert_eq!(iris.feature_len(), 4);
//! println!("{} samples of {:?}", iris.len(), iris.class_names());
//! # Ok::<(), ember_nn_std::data::DataError>(())
//! ```

use super::dataset::TensorDataset;
use super::error::{DataError, Location, Result};
use super::table::{parse_csv_table, Cell, CsvFormat, Header};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use super::table::Column;

/// How the label column is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LabelFormat {
    /// Non-negative integers, the class indices (`3`, or `3.0`).
    #[default]
    Integer,
    /// Class names (`setosa`), numbered in sorted order (like
    /// scikit-learn's `LabelEncoder`); the data set keeps the names.
    Names,
}

/// What to read from a CSV file; [`CsvOptions::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first non-blank line is a header of column names
    /// (default: true).
    pub has_header: bool,
    /// The field separator (default: `,`).
    pub delimiter: u8,
    /// The label column (default: the last).
    pub label: Column,
    /// The feature columns, in order; `None` (the default) for every column
    /// but the label.
    pub features: Option<Vec<Column>>,
    /// How labels are written (default: integers).
    pub label_format: LabelFormat,
    /// The number of classes; `None` (the default) for the largest label
    /// plus one (integers) or the number of distinct names.
    pub num_classes: Option<usize>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            has_header: true,
            delimiter: b',',
            label: Column::Last,
            features: None,
            label_format: LabelFormat::Integer,
            num_classes: None,
        }
    }
}

impl CsvOptions {
    /// The defaults: a header, commas, integer labels in the last column,
    /// every other column a feature.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets whether there is a header line.
    #[must_use]
    pub fn has_header(mut self, yes: bool) -> Self {
        self.has_header = yes;
        self
    }

    /// Sets the field separator.
    #[must_use]
    pub fn delimiter(mut self, d: u8) -> Self {
        self.delimiter = d;
        self
    }

    /// Sets the label column.
    #[must_use]
    pub fn label(mut self, c: Column) -> Self {
        self.label = c;
        self
    }

    /// Sets the feature columns.
    #[must_use]
    pub fn features(mut self, cols: Vec<Column>) -> Self {
        self.features = Some(cols);
        self
    }

    /// Sets how labels are written.
    #[must_use]
    pub fn label_format(mut self, f: LabelFormat) -> Self {
        self.label_format = f;
        self
    }

    /// Sets the number of classes.
    #[must_use]
    pub fn num_classes(mut self, n: usize) -> Self {
        self.num_classes = Some(n);
        self
    }
}

/// Reads a CSV file into a [`TensorDataset`]; see [`parse_csv`].
pub fn load_csv(path: impl AsRef<Path>, opts: &CsvOptions) -> Result<TensorDataset> {
    let path = path.as_ref();
    let text = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(text).map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        what: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })?;
    parse_csv(path, &text, opts)
}

/// Parses CSV text (the content of `path`, which names it in errors) into a
/// [`TensorDataset`].
///
/// Errors give the file, the 1-based line and column (and the column's name
/// when there is a header): [`DataError::RaggedRow`] for a row with another
/// number of fields than the first, [`DataError::BadCell`] for a feature
/// that is not a finite number or a label that is not a class,
/// [`DataError::NoSuchColumn`] for a column asked for that is not there.
pub fn parse_csv(path: &Path, text: &str, opts: &CsvOptions) -> Result<TensorDataset> {
    let format = CsvFormat {
        header: if opts.has_header {
            Header::Yes
        } else {
            Header::No
        },
        delimiter: opts.delimiter,
    };
    let table = parse_csv_table(path, text.as_bytes(), &format)?;
    let label_col = table.resolve(&opts.label)?;
    let feature_cols: Vec<usize> = match &opts.features {
        Some(cols) => cols
            .iter()
            .map(|c| table.resolve(c))
            .collect::<Result<_>>()?,
        None => (0..table.width()).filter(|&c| c != label_col).collect(),
    };
    let features = table.features(&feature_cols)?;
    // Labels as read, with the line they come from.
    let raw_labels: Vec<(usize, String)> = (0..table.rows())
        .map(|r| {
            let line = match table.location(r) {
                Location::Line(l) => usize::try_from(l).unwrap_or(usize::MAX),
                Location::Row(r) => r,
            };
            let cell = match table.cell(r, label_col) {
                Some(Cell::Text(s)) => s.to_string(),
                _ => String::new(),
            };
            (line, cell)
        })
        .collect();
    let header = table.column_names();
    let bad = |line, column: usize, cell: &str, problem: String| DataError::BadCell {
        path: PathBuf::from(path),
        line,
        column: column + 1,
        name: table.has_header().then(|| header[column].clone()),
        cell: cell.to_string(),
        problem,
    };

    let (labels, num_classes, names) = match opts.label_format {
        LabelFormat::Integer => {
            let mut labels = Vec::with_capacity(raw_labels.len());
            for (line, cell) in &raw_labels {
                let l = cell.parse::<usize>().ok().or_else(|| {
                    cell.parse::<f64>()
                        .ok()
                        .filter(|v| v.fract() == 0.0 && *v >= 0.0 && *v < 1e15)
                        .map(|v| v as usize)
                });
                let Some(l) = l else {
                    return Err(bad(
                        *line,
                        label_col,
                        cell,
                        "not a class index (a non-negative integer)".into(),
                    ));
                };
                if l == usize::MAX {
                    // Its class count, l + 1, is not a number.
                    return Err(bad(*line, label_col, cell, "class index too large".into()));
                }
                if let Some(n) = opts.num_classes.filter(|&n| l >= n) {
                    return Err(bad(
                        *line,
                        label_col,
                        cell,
                        format!("label out of range ({n} classes)"),
                    ));
                }
                labels.push(l);
            }
            let n = opts
                .num_classes
                .unwrap_or_else(|| labels.iter().max().map_or(0, |m| m + 1));
            (labels, n, Vec::new())
        }
        LabelFormat::Names => {
            let mut classes: BTreeMap<&str, usize> =
                raw_labels.iter().map(|(_, c)| (c.as_str(), 0)).collect();
            for (i, v) in classes.values_mut().enumerate() {
                *v = i;
            }
            let n = opts.num_classes.unwrap_or(classes.len());
            if classes.len() > n {
                let (line, cell) = raw_labels
                    .iter()
                    .find(|(_, c)| classes[c.as_str()] >= n)
                    .cloned()
                    .unwrap_or_default();
                return Err(bad(
                    line,
                    label_col,
                    &cell,
                    format!("{} distinct class names for {n} classes", classes.len()),
                ));
            }
            let labels = raw_labels
                .iter()
                .map(|(_, c)| classes[c.as_str()])
                .collect();
            let mut names: Vec<String> = classes.keys().map(|k| k.to_string()).collect();
            names.extend((names.len()..n).map(|i| format!("class {i}")));
            (labels, n, names)
        }
    };

    let ds = TensorDataset::new(features, labels, feature_cols.len(), num_classes)?;
    if names.is_empty() {
        Ok(ds)
    } else {
        ds.with_class_names(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    /// The largest `usize` as a label is an error, not an overflow of the
    /// class count (found by the fuzzer).
    #[test]
    fn the_largest_index_is_refused() {
        let text = "a,label\n1,18446744073709551615\n";
        let e = parse_csv(Path::new("m.csv"), text, &CsvOptions::new()).unwrap_err();
        assert!(e.to_string().contains("class index too large"), "{e}");
    }

    #[test]
    fn quoted_fields_span_lines() {
        let text = "a,label\r\n\"1.5\",\"two\nlines\"\r\n2,x\r\n";
        let opts = CsvOptions::new().label_format(LabelFormat::Names);
        let ds = parse_csv(Path::new("q.csv"), text, &opts).unwrap();
        assert_eq!(ds.features(), &[1.5, 2.0]);
        assert_eq!(ds.class_names(), &["two\nlines", "x"]);
    }

    #[test]
    fn columns_by_name_and_index() {
        let text = "a,label,b\n1,0,2\n\n3,2,4\n";
        let p = Path::new("t.csv");
        let ds = parse_csv(p, text, &CsvOptions::new().label(Column::name("label"))).unwrap();
        assert_eq!(ds.features(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ds.labels(), &[0, 2]);
        assert_eq!(ds.num_classes(), 3);
        let opts = CsvOptions::new()
            .has_header(false)
            .label(Column::Index(0))
            .features(vec![Column::Index(2)]);
        let ds = parse_csv(p, "1,5,6\n0,7,8", &opts).unwrap();
        assert_eq!((ds.features(), ds.labels()), (&[6.0, 8.0][..], &[1, 0][..]));
        let e = parse_csv(p, "1,2", &opts.clone().label(Column::name("x"))).unwrap_err();
        assert!(matches!(e, DataError::NoSuchColumn { .. }), "{e}");
    }

    #[test]
    fn class_names_are_sorted() {
        let text = "x;species\n1;virginica\n2;setosa\n3;virginica\n";
        let opts = CsvOptions::new()
            .delimiter(b';')
            .label_format(LabelFormat::Names);
        let ds = parse_csv(Path::new("i.csv"), text, &opts).unwrap();
        assert_eq!(ds.labels(), &[1, 0, 1]);
        assert_eq!(ds.class_name(0), Some("setosa"));
        assert_eq!(ds.num_classes(), 2);
    }
}
