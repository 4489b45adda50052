//! Classification data from CSV files: numeric feature columns and one label
//! column.
//!
//! The parser is deliberately simple: one record per line (blank lines are
//! skipped), fields split at the delimiter, surrounding spaces trimmed, and a
//! field may be quoted with `"` (a doubled `""` inside being one quote), but
//! cannot span lines.
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
use super::error::{DataError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A column, by 0-based index or by header name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// The column at this 0-based index.
    Index(usize),
    /// The column whose header is this name (the file must have a header).
    Name(String),
    /// The last column.
    Last,
}

impl Column {
    /// The column named `name` in the header.
    pub fn name(name: impl Into<String>) -> Self {
        Column::Name(name.into())
    }

    fn describe(&self) -> String {
        match self {
            Column::Index(i) => format!("at index {i}"),
            Column::Name(n) => format!("{n:?}"),
            Column::Last => "last".to_string(),
        }
    }
}

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

/// Splits one line into fields. Returns the fields, or the 1-based column
/// of a malformed quoted field.
fn split_fields(line: &str, delim: char) -> std::result::Result<Vec<String>, usize> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|&c| c == ' ' || c == '\t') && delim != ' ' {
            chars.next();
        }
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(fields.len() + 1),
                }
            }
            while chars.peek().is_some_and(|&c| c != delim) {
                let c = chars.next().unwrap_or(' ');
                if !c.is_whitespace() {
                    return Err(fields.len() + 1);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == delim {
                    break;
                }
                field.push(c);
                chars.next();
            }
            field = field.trim().to_string();
        }
        fields.push(field);
        match chars.next() {
            Some(_) => continue, // the delimiter
            None => return Ok(fields),
        }
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
    let delim = char::from(opts.delimiter);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let pathbuf = || PathBuf::from(path);
    let quote_err = |line, column, names: &[String]| DataError::BadCell {
        path: pathbuf(),
        line,
        column,
        name: names.get(column - 1).cloned(),
        cell: String::new(),
        problem: "unterminated or malformed quoted field".to_string(),
    };

    let mut header: Vec<String> = Vec::new();
    let mut first_row = None;
    let width = match lines.next() {
        None => {
            return Err(DataError::Format {
                path: pathbuf(),
                what: "no data (the file is empty)".to_string(),
            })
        }
        Some((n, l)) => {
            let fields = split_fields(l, delim).map_err(|c| quote_err(n, c, &[]))?;
            let w = fields.len();
            if opts.has_header {
                header = fields;
            } else {
                first_row = Some((n, fields));
            }
            w
        }
    };

    let resolve = |c: &Column| -> Result<usize> {
        let idx = match c {
            Column::Index(i) => Some(*i).filter(|&i| i < width),
            Column::Name(n) => header.iter().position(|h| h == n),
            Column::Last => width.checked_sub(1),
        };
        idx.ok_or_else(|| DataError::NoSuchColumn {
            path: pathbuf(),
            column: c.describe(),
        })
    };
    let label_col = resolve(&opts.label)?;
    let feature_cols: Vec<usize> = match &opts.features {
        Some(cols) => cols.iter().map(resolve).collect::<Result<_>>()?,
        None => (0..width).filter(|&c| c != label_col).collect(),
    };

    let bad = |line, column: usize, cell: &str, problem: String| DataError::BadCell {
        path: pathbuf(),
        line,
        column: column + 1,
        name: header.get(column).cloned(),
        cell: cell.to_string(),
        problem,
    };

    let mut features = Vec::new();
    // Labels as read, with the line they come from.
    let mut raw_labels: Vec<(usize, String)> = Vec::new();
    let rows = first_row
        .map(|(n, f)| (n, Ok(f)))
        .into_iter()
        .chain(lines.map(|(n, l)| (n, split_fields(l, delim))));
    for (line, fields) in rows {
        let fields = fields.map_err(|c| quote_err(line, c, &header))?;
        if fields.len() != width {
            return Err(DataError::RaggedRow {
                path: pathbuf(),
                line,
                expected: width,
                found: fields.len(),
            });
        }
        for &c in &feature_cols {
            let cell = &fields[c];
            match cell.parse::<f32>() {
                Ok(v) if v.is_finite() => features.push(v),
                Ok(_) => return Err(bad(line, c, cell, "not a finite number".into())),
                Err(_) => return Err(bad(line, c, cell, "not a number".into())),
            }
        }
        raw_labels.push((line, fields[label_col].clone()));
    }

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

    #[test]
    fn fields_split_with_quotes_and_spaces() {
        assert_eq!(split_fields(" 1, 2 ,3", ',').unwrap(), ["1", "2", "3"]);
        assert_eq!(
            split_fields(r#""a,b", "say ""hi""" ,"#, ',').unwrap(),
            ["a,b", r#"say "hi""#, ""]
        );
        assert_eq!(split_fields(r#"1,"open"#, ','), Err(2));
        assert_eq!(split_fields(r#""x"y,1"#, ','), Err(1));
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
