//! Tables of data from CSV and NumPy files, and classification data sets
//! made of their columns.
//!
//! [`read_table`] reads a file into a [`Table`] — rows of cells under
//! column names — by its extension:
//!
//! - `.csv`, `.tsv` (tab-separated), and either gzipped (`.csv.gz`): text
//!   read by the [`csv`](https://docs.rs/csv) crate, so a quoted field may
//!   hold the delimiter, quotes (doubled) and line breaks; CRLF line ends
//!   and a UTF-8 byte-order mark are understood, blank lines skipped, cells
//!   trimmed. The first record is a header when [`Header::Yes`], or with
//!   [`Header::Auto`] when some column's first cell is not a number and its
//!   second is.
//! - `.npy`: a NumPy array of bool, integers or floats (1 to 8 bytes, either
//!   byte order, C or Fortran order), read by [`npyz`](https://docs.rs/npyz):
//!   rows along the first axis, the others flattened (a 1-D array is one
//!   column). [`ReadOptions::labels`] names a second `.npy` of one value per
//!   row, which becomes the last column, `label`.
//! - `.npz`: NumPy's zip archive of arrays: the features are the array
//!   named `x`, `X`, `features`, `data` or `inputs`, or else the only array
//!   of two or more dimensions; the labels (the last column, `label`) the
//!   one named `y`, `Y`, `labels`, `label`, `target` or `targets`, or else
//!   the only 1-D array, if any.
//!
//! Before reading, the file's size is checked against the memory available
//! ([`ReadOptions::memory`], by default Linux's `MemAvailable`): a table
//! takes about four times its CSV text and twelve bytes per NumPy element,
//! and decompressed data is read no further than that budget. A file too
//! large is a [`DataError::TooLarge`] before it is read.
//!
//! [`Table::classify`] then picks the target column and the features
//! (by [`Column`]: a header name or a 0-based index; by default the last
//! column and all the others) and makes a classification
//! [`TensorDataset`](super::TensorDataset): integer labels or names, the
//! classes numbered in sorted order (numerically for integers), their names
//! kept. [`Table::classify_like`] reads a test file with the training data's
//! columns and classes. [`Table::regress`] makes a regression data set of
//! one or several float target columns, [`Table::reconstruct`] an
//! autoencoder's (the features are the targets), [`Table::regress_like`]
//! reads a test file for either, and [`Table::infer_task`] says which task
//! a target column suggests and why.
//!
//! ```no_run
//! use ember_nn_std::data::table::{read_table, Column, ReadOptions};
//! use ember_nn_std::data::Dataset;
//!
//! let table = read_table("iris.csv", &ReadOptions::new())?;
//! let iris = table.classify(&Column::name("species"), None)?;
//! println!("{}", iris.task()); // classify: target column `species` holds 3 distinct strings
//! assert_eq!(iris.dataset.feature_len(), 4);
//! # Ok::<(), ember_nn_std::data::DataError>(())
//! ```

mod classify;
mod file;
mod npy;
mod regress;
mod text;

pub use classify::{Classified, LabelKind};
pub use file::{read_table, FileKind, ReadOptions};
pub use npy::{parse_npy, parse_npz};
pub use regress::{Inferred, Regressed, MAX_INFERRED_CLASSES};
pub use text::{parse_csv_table, CsvFormat, Header};

use super::error::{DataError, Location, Result};
use std::path::{Path, PathBuf};

/// A column, by 0-based index or by header name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// The column at this 0-based index.
    Index(usize),
    /// The column whose header is this name. In a [`Table`], a name that
    /// no column has but that is a number is taken as an index, so that
    /// `--target 4` works on any file.
    Name(String),
    /// The last column.
    Last,
}

impl Column {
    /// The column named `name` in the header.
    pub fn name(name: impl Into<String>) -> Self {
        Column::Name(name.into())
    }

    /// How the column was asked for, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Column::Index(i) => format!("at index {i}"),
            Column::Name(n) => format!("{n:?}"),
            Column::Last => "last".to_string(),
        }
    }
}

/// The kind of a number read from a NumPy array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumKind {
    /// A float.
    Float,
    /// A signed or unsigned integer.
    Int,
    /// A bool (0 or 1).
    Bool,
}

/// One cell of a [`Table`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    /// The (trimmed) text of a CSV cell.
    Text(&'a str),
    /// A number of a NumPy array, and its kind.
    Number(f64, NumKind),
}

#[derive(Clone, Debug)]
enum Cells {
    /// Row-major cells: cell `i` is `text[ends[i - 1]..ends[i]]`; `lines`
    /// holds the 1-based line each row starts on.
    Text {
        text: String,
        ends: Vec<usize>,
        lines: Vec<u64>,
    },
    /// Row-major values, and each column's kind.
    Numbers {
        values: Vec<f64>,
        kinds: Vec<NumKind>,
    },
}

/// Rows of cells under column names, read from one file (or a NumPy file
/// and its labels).
#[derive(Clone, Debug)]
pub struct Table {
    path: PathBuf,
    names: Vec<String>,
    has_header: bool,
    rows: usize,
    cells: Cells,
}

impl Table {
    fn text(
        path: &Path,
        names: Vec<String>,
        has_header: bool,
        text: String,
        ends: Vec<usize>,
        lines: Vec<u64>,
    ) -> Self {
        Table {
            path: path.to_path_buf(),
            rows: lines.len(),
            names,
            has_header,
            cells: Cells::Text { text, ends, lines },
        }
    }

    fn numbers(path: &Path, names: Vec<String>, values: Vec<f64>, kinds: Vec<NumKind>) -> Self {
        let rows = values.len().checked_div(kinds.len()).unwrap_or(0);
        Table {
            path: path.to_path_buf(),
            names,
            has_header: true,
            rows,
            cells: Cells::Numbers { values, kinds },
        }
    }

    /// The file the table was read from (its errors name it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The columns' names: a CSV file's header, the 0-based indices
    /// (`0`, `1`, ...) of a file without one, and for NumPy arrays the
    /// indices and `label` for the labels.
    pub fn column_names(&self) -> &[String] {
        &self.names
    }

    /// Whether the names come from the file (a CSV header, or NumPy
    /// arrays, whose columns are always named the same way).
    pub fn has_header(&self) -> bool {
        self.has_header
    }

    /// The number of rows (below the header).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// The cell at `row`, `column` (both 0-based).
    pub fn cell(&self, row: usize, column: usize) -> Option<Cell<'_>> {
        if row >= self.rows || column >= self.width() {
            return None;
        }
        let i = row * self.width() + column;
        match &self.cells {
            Cells::Text { text, ends, .. } => {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                text.get(start..ends[i]).map(Cell::Text)
            }
            Cells::Numbers { values, kinds } => Some(Cell::Number(values[i], kinds[column])),
        }
    }

    /// Where row `row` is in the file: its line (CSV) or its index (NumPy).
    pub fn location(&self, row: usize) -> Location {
        match &self.cells {
            Cells::Text { lines, .. } => Location::Line(lines.get(row).copied().unwrap_or(0)),
            Cells::Numbers { .. } => Location::Row(row),
        }
    }

    /// The header's name of column `c`, when the file has a header.
    fn header_name(&self, c: usize) -> Option<String> {
        self.has_header
            .then(|| self.names.get(c).cloned())
            .flatten()
    }

    /// The 0-based index of column `c`, or [`DataError::NoSuchColumn`]
    /// listing the file's columns.
    pub fn resolve(&self, c: &Column) -> Result<usize> {
        let width = self.width();
        let idx = match c {
            Column::Index(i) => Some(*i).filter(|&i| i < width),
            Column::Name(n) => self
                .has_header
                .then(|| self.names.iter().position(|h| h == n))
                .flatten()
                .or_else(|| n.trim().parse::<usize>().ok().filter(|&i| i < width)),
            Column::Last => width.checked_sub(1),
        };
        idx.ok_or_else(|| DataError::NoSuchColumn {
            path: self.path.clone(),
            column: c.describe(),
            columns: if self.has_header {
                self.names.clone()
            } else {
                (0..width).map(|i| i.to_string()).collect()
            },
        })
    }

    /// The `f32` features of `columns`, row-major, each checked to be a
    /// finite number ([`DataError::BadCell`] for a CSV cell, naming its line,
    /// column and text; [`DataError::NotFinite`] for an array's value).
    pub fn features(&self, columns: &[usize]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.rows.saturating_mul(columns.len()));
        for row in 0..self.rows {
            for &c in columns {
                match self.cell(row, c) {
                    Some(Cell::Text(s)) => match s.parse::<f32>() {
                        Ok(v) if v.is_finite() => out.push(v),
                        Ok(_) => return Err(self.bad_cell(row, c, s, "not a finite number")),
                        Err(_) => return Err(self.bad_cell(row, c, s, "not a number")),
                    },
                    Some(Cell::Number(v, _)) => {
                        let f = v as f32;
                        if !f.is_finite() {
                            return Err(DataError::NotFinite {
                                path: self.path.clone(),
                                row,
                                column: c,
                                value: v,
                            });
                        }
                        out.push(f);
                    }
                    None => return Err(self.no_such_index(c)),
                }
            }
        }
        Ok(out)
    }

    fn no_such_index(&self, c: usize) -> DataError {
        self.resolve(&Column::Index(c))
            .err()
            .unwrap_or_else(|| DataError::Invalid(format!("column {c} out of range")))
    }

    /// A [`DataError::BadCell`] for the cell at `row`, `column` (0-based).
    pub(crate) fn bad_cell(
        &self,
        row: usize,
        column: usize,
        cell: &str,
        problem: &str,
    ) -> DataError {
        let line = match self.location(row) {
            Location::Line(l) => usize::try_from(l).unwrap_or(usize::MAX),
            Location::Row(r) => r,
        };
        DataError::BadCell {
            path: self.path.clone(),
            line,
            column: column + 1,
            name: self.header_name(column),
            cell: cell.to_string(),
            problem: problem.to_string(),
        }
    }
}
