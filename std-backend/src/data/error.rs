//! The errors of the data layer. Every error that comes from a file names it.

use std::io;
use std::path::PathBuf;

/// What can go wrong while reading, parsing or assembling a data set.
///
/// Each variant that comes from a file carries its path (`path`), so the
/// message says which file is at fault and what is wrong with it, e.g.
/// `data/train-images-idx3-ubyte.gz: wrong magic number 2049 (0x00000801),
/// expected 2051 (IDX images of u8)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// The file could not be written.
    #[error("{}: cannot write: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// A directory given for a data set does not exist (or is not a directory).
    #[error("{}: no such directory", .dir.display())]
    NoDirectory {
        /// The directory.
        dir: PathBuf,
    },

    /// A directory given for a data set lacks some of the files needed.
    #[error("{}: missing {} (each may also be gzipped, or below raw/)", .dir.display(), .files.join(", "))]
    Missing {
        /// The directory.
        dir: PathBuf,
        /// The base names of the files not found.
        files: Vec<String>,
    },

    /// None of the places a data set's file may be in holds it.
    #[error(
        "{}: {file}.gz not found (nor {file}, nor either below raw/ or {}/raw/)",
        .dir.display(), .subdir
    )]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The file's name, without `.gz`.
        file: String,
        /// The data set's subdirectory in torchvision's layout.
        subdir: String,
        /// Every path tried, relative to `dir`.
        tried: Vec<String>,
    },

    /// A gzip-compressed file is truncated or corrupt (bad header, bad
    /// deflate data, missing trailer or checksum mismatch).
    #[error("{}: truncated or corrupt gzip data: {source}", .path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: io::Error,
    },

    /// An IDX file does not start with the magic number expected.
    #[error(
        "{}: wrong magic number {found} ({found:#010x}), expected {expected} ({what})",
        .path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The big-endian 32-bit number found at the start of the file.
        found: u32,
        /// The number expected.
        expected: u32,
        /// What the expected number means.
        what: &'static str,
    },

    /// A file ends before the data its header announces, or before its
    /// header is complete.
    #[error(
        "{}: truncated data: expected {expected} bytes ({what}), found {found}",
        .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: &'static str,
        /// The number of bytes needed.
        expected: usize,
        /// The number of bytes there.
        found: usize,
    },

    /// A file goes on after the data its header announces.
    #[error("{}: {extra} unexpected bytes after the data", .path.display())]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// How many bytes are left over.
        extra: usize,
    },

    /// An image file and its label file disagree on the number of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        .images_path.display(), .labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// The number of images in it.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// The number of labels in it.
        labels: usize,
    },

    /// A label is not a valid class index.
    #[error(
        "{}: label {label} of sample {index} is out of range (the data set has {num_classes} classes)",
        .path.display()
    )]
    LabelOutOfRange {
        /// The file the label comes from.
        path: PathBuf,
        /// The sample's index (0-based).
        index: usize,
        /// The label found.
        label: usize,
        /// The number of classes.
        num_classes: usize,
    },

    /// A file's content has a shape other than the one required (an IDX
    /// file of the wrong rank or image size, an empty CSV file, ...).
    #[error("{}: {what}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },

    /// A CSV row has a number of fields other than the first row's.
    #[error(
        "{}:{line}: ragged row: expected {expected} fields, found {found}",
        .path.display()
    )]
    RaggedRow {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The number of fields of the first row.
        expected: usize,
        /// The number of fields of this row.
        found: usize,
    },

    /// A CSV cell that should hold a number (or a class label) does not.
    #[error(
        "{}:{line}: column {column}{}: {problem}: {cell:?}",
        .path.display(),
        .name.as_ref().map(|n| format!(" ({n:?})")).unwrap_or_default()
    )]
    BadCell {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The 1-based column number.
        column: usize,
        /// The column's header name, when the file has a header.
        name: Option<String>,
        /// The cell's text.
        cell: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A column asked for is not in the file.
    #[error("{}: no column {column} ({})", .path.display(), describe_columns(.columns))]
    NoSuchColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for, as given.
        column: String,
        /// The file's columns: the header's names, or (without a header)
        /// their 0-based indices.
        columns: Vec<String>,
    },

    /// A value of a NumPy array that is NaN or infinite (or beyond `f32`).
    #[error(
        "{}: element [{row}, {column}] is {value}, not a finite number",
        .path.display()
    )]
    NotFinite {
        /// The file.
        path: PathBuf,
        /// The 0-based row.
        row: usize,
        /// The 0-based column.
        column: usize,
        /// The value.
        value: f64,
    },

    /// A file whose data would not fit in the memory available, found
    /// before the data is read.
    #[error(
        "{}: too large for memory: {what} needs about {} MiB, {} MiB available",
        .path.display(), mib(*.needed), mib(*.available)
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What needs the memory (the file's text, its decompressed data...).
        what: &'static str,
        /// The bytes needed (an estimate, or a lower bound).
        needed: u64,
        /// The bytes available.
        available: u64,
    },

    /// A NumPy array of an element type that is not read (strings, complex
    /// numbers, objects, records...).
    #[error(
        "{}: unsupported NumPy dtype {dtype} (bool, integers and floats of 1 to 8 bytes are read)",
        .path.display()
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The dtype as the file writes it (`<U5`, `<c16`...).
        dtype: String,
    },

    /// A feature file and its label file disagree on the number of rows.
    #[error(
        "{} holds {rows} rows but {} holds {labels} labels",
        .features_path.display(), .labels_path.display()
    )]
    RowMismatch {
        /// The features.
        features_path: PathBuf,
        /// Their rows.
        rows: usize,
        /// The labels.
        labels_path: PathBuf,
        /// Their number.
        labels: usize,
    },

    /// A column asked for as a feature that is the target too.
    #[error("{}: column {column:?} is the target, and cannot be a feature too", .path.display())]
    TargetAsFeature {
        /// The file.
        path: PathBuf,
        /// The column's name.
        column: String,
    },

    /// A split fraction outside `[0, 1)`.
    #[error("a split fraction must be in [0, 1), not {0}")]
    Fraction(f32),

    /// A classification target with fewer than two classes.
    #[error(
        "{}: target column {column} holds one class only ({class:?}): nothing to classify",
        .path.display()
    )]
    OneClass {
        /// The file.
        path: PathBuf,
        /// The target column's name.
        column: String,
        /// The only class.
        class: String,
    },

    /// A classification target of numbers that are not all integers.
    #[error(
        "{}: target column {column} holds numbers that are not integers ({example} at {at}): a class label is a name or an integer",
        .path.display()
    )]
    NotClasses {
        /// The file.
        path: PathBuf,
        /// The target column's name.
        column: String,
        /// The first value that is no integer, as written.
        example: String,
        /// Where it is.
        at: Location,
    },

    /// A label of a test file that the training data does not have.
    #[error(
        "{}: {at}: class {class:?} never occurs in the training data (its classes: {})",
        .path.display(), .known.join(", ")
    )]
    UnseenClass {
        /// The test file.
        path: PathBuf,
        /// Where the label is.
        at: Location,
        /// The label.
        class: String,
        /// The training data's classes.
        known: Vec<String>,
    },

    /// Arguments that do not fit together (a feature matrix whose length is
    /// not a multiple of the row length, a label beyond the class count...).
    #[error("invalid data set: {0}")]
    Invalid(String),
}

/// Where a value is in a file: a line of a text file, or a row of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The 1-based line of a text file where the record starts.
    Line(u64),
    /// The 0-based row of an array.
    Row(usize),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(l) => write!(f, "line {l}"),
            Location::Row(r) => write!(f, "row {r}"),
        }
    }
}

fn describe_columns(columns: &[String]) -> String {
    const SHOWN: usize = 40;
    let mut text = format!("the file's columns: {}", columns.join(", "));
    if columns.len() > SHOWN {
        text = format!(
            "the file's columns: {}, ... ({} in all)",
            columns[..SHOWN].join(", "),
            columns.len()
        );
    }
    text
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
