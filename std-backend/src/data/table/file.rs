//! Reading a data file by its extension, within the memory available.

use super::npy::BYTES_PER_ELEMENT;
use super::{npy, text, CsvFormat, Header, Table};
use crate::data::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A table's memory, per byte of CSV text: the text, the cells' offsets
/// and the `f32` features.
const BYTES_PER_TEXT_BYTE: u64 = 4;

/// The kinds of data file [`read_table`] reads, told by the extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `.csv` or `.tsv`.
    Csv,
    /// `.csv.gz` or `.tsv.gz`.
    CsvGz,
    /// `.npy`.
    Npy,
    /// `.npz`.
    Npz,
}

impl FileKind {
    /// The kind of `path`, by its (case-insensitive) extension; `None` for
    /// another.
    pub fn of(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        [
            (".csv.gz", FileKind::CsvGz),
            (".tsv.gz", FileKind::CsvGz),
            (".csv", FileKind::Csv),
            (".tsv", FileKind::Csv),
            (".npy", FileKind::Npy),
            (".npz", FileKind::Npz),
        ]
        .into_iter()
        .find_map(|(ext, kind)| name.ends_with(ext).then_some(kind))
    }

    fn tab_separated(path: &Path) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.to_ascii_lowercase().contains(".tsv"))
    }
}

/// What [`read_table`] reads besides the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Whether a CSV file's first record is a header (default: decide from
    /// the data).
    pub header: Header,
    /// A CSV file's field separator; `None` (the default) for a tab in a
    /// `.tsv` file, a comma otherwise.
    pub delimiter: Option<u8>,
    /// A `.npy` file of one label per row of a `.npy` feature file: the
    /// table's last column, `label`.
    pub labels: Option<PathBuf>,
    /// The bytes of memory the table may take; `None` for the memory
    /// available now (Linux's `MemAvailable`; no limit where the system does
    /// not say).
    pub memory: Option<u64>,
}

impl ReadOptions {
    /// The defaults: the format told by the file, no label file, the
    /// memory available.
    pub fn new() -> Self {
        Self::default()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file's bytes, after checking that `factor` times its size fits in
/// `memory`.
fn read_file(path: &Path, factor: u64, memory: u64, what: &'static str) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path).map_err(io_err(path))?.len();
    let needed = size.saturating_mul(factor);
    if needed > memory {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            what,
            needed,
            available: memory,
        });
    }
    std::fs::read(path).map_err(io_err(path))
}

/// A gzipped file's decompressed bytes, read no further than `memory /
/// factor` bytes.
fn read_gz(path: &Path, factor: u64, memory: u64) -> Result<Vec<u8>> {
    let packed = read_file(path, 1, memory, "the compressed file")?;
    let limit = memory / factor;
    let mut out = Vec::new();
    MultiGzDecoder::new(&packed[..])
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > limit {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            what: "the decompressed text",
            needed: limit.saturating_add(1).saturating_mul(factor),
            available: memory,
        });
    }
    Ok(out)
}

/// Reads a data file into a [`Table`] by its extension ([`FileKind`]); see
/// the [module's documentation](super) for the formats.
///
/// Errors: [`DataError::Io`] for a file that cannot be read,
/// [`DataError::TooLarge`] for one that would not fit in memory (found
/// before reading it), [`DataError::Format`] for an unknown extension or an
/// empty file, and the parsers' errors.
pub fn read_table(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Table> {
    let path = path.as_ref();
    let memory = opts
        .memory
        .or_else(crate::train::available_memory)
        .unwrap_or(u64::MAX);
    let kind = FileKind::of(path).ok_or_else(|| DataError::Format {
        path: path.to_path_buf(),
        what: "unknown kind of data file (.csv, .tsv, .csv.gz, .npy or .npz)".to_string(),
    })?;
    if opts.labels.is_some() && kind != FileKind::Npy {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            what: "a label file goes with a .npy feature file only".to_string(),
        });
    }
    let format = CsvFormat {
        header: opts.header,
        delimiter: opts.delimiter.unwrap_or(if FileKind::tab_separated(path) {
            b'\t'
        } else {
            b','
        }),
    };
    match kind {
        FileKind::Csv => {
            let bytes = read_file(path, BYTES_PER_TEXT_BYTE, memory, "the CSV text")?;
            text::parse_csv_table(path, &bytes, &format)
        }
        FileKind::CsvGz => {
            let bytes = read_gz(path, BYTES_PER_TEXT_BYTE, memory)?;
            text::parse_csv_table(path, &bytes, &format)
        }
        FileKind::Npy => {
            // The file's bytes and, read, its elements (at least one byte each).
            let factor = 1 + BYTES_PER_ELEMENT;
            let bytes = read_file(path, factor, memory, "the array")?;
            let labels = match &opts.labels {
                Some(lp) => Some((lp.as_path(), read_file(lp, factor, memory, "the labels")?)),
                None => None,
            };
            npy::parse_npy(
                path,
                &bytes,
                labels.as_ref().map(|(p, b)| (*p, &b[..])),
                memory,
            )
        }
        FileKind::Npz => {
            let bytes = read_file(path, 1, memory, "the archive")?;
            npy::parse_npz(path, &bytes, memory)
        }
    }
}
