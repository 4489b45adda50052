//! NumPy `.npy` arrays and `.npz` archives into a [`Table`], through the
//! `npyz` crate (and `zip` for the archives).

use super::{NumKind, Table};
use crate::data::error::{DataError, Result};
use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes of memory an element of an array takes once read: the table's
/// `f64` and the data set's `f32`.
pub(super) const BYTES_PER_ELEMENT: u64 = 12;

/// One array: `rows` rows of `cols` values, row-major.
pub(super) struct Array {
    rows: usize,
    cols: usize,
    values: Vec<f64>,
    kind: NumKind,
}

/// A [`DataError::Format`] of one line (the parsers' messages may have
/// several).
fn format_err(path: &Path, what: impl Into<String>) -> DataError {
    let what: String = what.into();
    DataError::Format {
        path: path.to_path_buf(),
        what: what
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Reads all `n` elements as `T`, widened to `f64`.
fn read_as<T, R>(path: &Path, npy: NpyFile<R>, n: usize, f: impl Fn(T) -> f64) -> Result<Vec<f64>>
where
    T: npyz::Deserialize,
    R: Read,
{
    let mut out = Vec::with_capacity(n);
    let reader = npy
        .data::<T>()
        .map_err(|e| format_err(path, e.to_string()))?;
    for v in reader {
        out.push(f(
            v.map_err(|e| format_err(path, format!("bad array data: {e}")))?
        ));
    }
    Ok(out)
}

/// Checks that the header length a `.npy` file states fits in the file:
/// npyz 0.9 allocates it (up to 4 GiB in format 2) before reading it.
fn check_header_length(path: &Path, bytes: &[u8]) -> Result<()> {
    if bytes.len() < 10 || !bytes.starts_with(b"\x93NUMPY") {
        return Err(format_err(
            path,
            "not a NumPy .npy file (no \\x93NUMPY magic)",
        ));
    }
    let (start, len): (usize, usize) = match bytes[6] {
        1 => (10, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
        2 | 3 if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (12, usize::try_from(len).unwrap_or(usize::MAX))
        }
        2 | 3 => (12, 0),
        v => {
            return Err(format_err(
                path,
                format!("unsupported .npy format version {v}"),
            ))
        }
    };
    let expected = start.saturating_add(len);
    if expected > bytes.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: "the .npy header",
            expected,
            found: bytes.len(),
        });
    }
    // npyz parses the header (a Python literal) with a backtracking parser
    // that takes exponential time in the depth of nested brackets: a
    // 300-byte header of 90 `{` took over 10 s. NumPy's headers nest 4 deep
    // at most (a structured dtype's list of tuples with a shape).
    let mut depth = 0usize;
    for &b in &bytes[start..expected] {
        match b {
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_NESTING {
            return Err(format_err(
                path,
                format!("not a NumPy .npy header (brackets nested over {MAX_HEADER_NESTING} deep)"),
            ));
        }
    }
    Ok(())
}

/// The deepest nesting of brackets a `.npy` header may have.
const MAX_HEADER_NESTING: usize = 4;

/// Parses one `.npy` array (the bytes of `path`) whose values fit in
/// `memory` bytes once read.
pub(super) fn parse_array(path: &Path, bytes: &[u8], memory: u64) -> Result<Array> {
    check_header_length(path, bytes)?;
    let mut rest = bytes;
    let header = NpyHeader::from_reader(&mut rest)
        .map_err(|e| format_err(path, format!("not a NumPy .npy file: {e}")))?;
    let dtype = header.dtype();
    let unsupported = || DataError::UnsupportedDtype {
        path: path.to_path_buf(),
        dtype: dtype.descr(),
    };
    let (kind, size) = match &dtype {
        DType::Plain(ts) => {
            let size = ts.size_field();
            let kind = match (ts.type_char(), size) {
                (TypeChar::Bool, 1) => NumKind::Bool,
                (TypeChar::Int | TypeChar::Uint, 1 | 2 | 4 | 8) => NumKind::Int,
                (TypeChar::Float, 4 | 8) => NumKind::Float,
                _ => return Err(unsupported()),
            };
            (kind, size)
        }
        _ => return Err(unsupported()),
    };
    let shape = header.shape().to_vec();
    if shape.is_empty() {
        return Err(format_err(path, "a scalar (0-D array), not rows of values"));
    }
    let too_many = || format_err(path, format!("an array of shape {shape:?} is too large"));
    let n = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(too_many)?;
    let data_bytes = n.checked_mul(size).ok_or_else(too_many)?;
    let found = rest.len() as u64;
    if found < data_bytes {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: "the array's data",
            expected: usize::try_from(data_bytes).unwrap_or(usize::MAX),
            found: rest.len(),
        });
    }
    if found > data_bytes {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            extra: usize::try_from(found - data_bytes).unwrap_or(usize::MAX),
        });
    }
    let needed = n.saturating_mul(BYTES_PER_ELEMENT);
    if needed > memory {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            what: "the array",
            needed,
            available: memory,
        });
    }
    // n elements fit in memory (and in the file), so in usize.
    let n = usize::try_from(n).map_err(|_| too_many())?;
    let rows = usize::try_from(shape[0]).map_err(|_| too_many())?;
    let cols = shape[1..]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(too_many)?;
    let order = header.order();
    let npy = NpyFile::with_header(header, rest);
    let raw = match (kind, size, &dtype) {
        (NumKind::Bool, ..) => read_as(path, npy, n, |v: bool| f64::from(u8::from(v)))?,
        (_, _, DType::Plain(ts)) => match (ts.type_char(), size) {
            (TypeChar::Int, 1) => read_as(path, npy, n, |v: i8| f64::from(v))?,
            (TypeChar::Int, 2) => read_as(path, npy, n, |v: i16| f64::from(v))?,
            (TypeChar::Int, 4) => read_as(path, npy, n, |v: i32| f64::from(v))?,
            (TypeChar::Int, _) => read_as(path, npy, n, |v: i64| v as f64)?,
            (TypeChar::Uint, 1) => read_as(path, npy, n, |v: u8| f64::from(v))?,
            (TypeChar::Uint, 2) => read_as(path, npy, n, |v: u16| f64::from(v))?,
            (TypeChar::Uint, 4) => read_as(path, npy, n, |v: u32| f64::from(v))?,
            (TypeChar::Uint, _) => read_as(path, npy, n, |v: u64| v as f64)?,
            (_, 4) => read_as(path, npy, n, |v: f32| f64::from(v))?,
            _ => read_as(path, npy, n, |v: f64| v)?,
        },
        _ => return Err(unsupported()),
    };
    let values = match order {
        Order::C => raw,
        Order::Fortran => fortran_to_c(&raw, &shape),
    };
    Ok(Array {
        rows,
        cols,
        values,
        kind,
    })
}

/// The elements of a Fortran-order (column-major) array of `shape`, in C
/// (row-major) order.
fn fortran_to_c(raw: &[f64], shape: &[u64]) -> Vec<f64> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    // Fortran strides: the first axis varies fastest.
    let mut strides = vec![1usize; dims.len()];
    for k in 1..dims.len() {
        strides[k] = strides[k - 1] * dims[k - 1];
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut index = vec![0usize; dims.len()];
    for _ in 0..raw.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(raw[offset]);
        // Next C-order index: the last axis varies fastest.
        for k in (0..dims.len()).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// The table of `features` (rows along the first axis, columns `0`, `1`,
/// ...) and, when given, one label per row as the last column, `label`.
fn table_of(path: &Path, features: Array, labels: Option<(PathBuf, Array)>) -> Result<Table> {
    let Some((labels_path, labels)) = labels else {
        let names = (0..features.cols).map(|i| i.to_string()).collect();
        let kinds = vec![features.kind; features.cols];
        return Ok(Table::numbers(path, names, features.values, kinds));
    };
    if labels.cols != 1 || labels.rows != features.rows {
        return Err(DataError::RowMismatch {
            features_path: path.to_path_buf(),
            rows: features.rows,
            labels_path,
            labels: labels.values.len(),
        });
    }
    let width = features.cols + 1;
    let mut values = Vec::with_capacity(features.rows.saturating_mul(width));
    for r in 0..features.rows {
        values.extend_from_slice(&features.values[r * features.cols..(r + 1) * features.cols]);
        values.push(labels.values[r]);
    }
    let mut names: Vec<String> = (0..features.cols).map(|i| i.to_string()).collect();
    names.push("label".to_string());
    let mut kinds = vec![features.kind; features.cols];
    kinds.push(labels.kind);
    Ok(Table::numbers(path, names, values, kinds))
}

/// Parses a `.npy` file's bytes (and, optionally, a labels `.npy`'s) into
/// a [`Table`] whose values fit in `memory` bytes. The labels must be one
/// value per row of the features ([`DataError::RowMismatch`] otherwise).
pub fn parse_npy(
    path: &Path,
    bytes: &[u8],
    labels: Option<(&Path, &[u8])>,
    memory: u64,
) -> Result<Table> {
    let features = parse_array(path, bytes, memory)?;
    let labels = match labels {
        Some((lp, lb)) => Some((lp.to_path_buf(), parse_array(lp, lb, memory)?)),
        None => None,
    };
    table_of(path, features, labels)
}

const FEATURE_NAMES: [&str; 5] = ["x", "X", "features", "data", "inputs"];
const LABEL_NAMES: [&str; 6] = ["y", "Y", "labels", "label", "target", "targets"];

/// Parses a `.npz` archive's bytes into a [`Table`] whose values fit in
/// `memory` bytes; which arrays are the features and the labels is said in
/// the [module's documentation](super).
pub fn parse_npz(path: &Path, bytes: &[u8], memory: u64) -> Result<Table> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format_err(path, format!("not a NumPy .npz (zip) archive: {e}")))?;
    let mut arrays: Vec<(String, Array)> = Vec::new();
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| format_err(path, format!("bad .npz member {i}: {e}")))?;
        let name = member.name().to_string();
        if member.is_dir() {
            continue;
        }
        let member_path = PathBuf::from(format!("{}:{name}", path.display()));
        let mut data = Vec::new();
        let limit = memory / BYTES_PER_ELEMENT;
        (&mut member)
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| format_err(&member_path, format!("cannot decompress: {e}")))?;
        if data.len() as u64 > limit {
            return Err(DataError::TooLarge {
                path: member_path,
                what: "the decompressed array",
                needed: limit.saturating_add(1).saturating_mul(BYTES_PER_ELEMENT),
                available: memory,
            });
        }
        let array = parse_array(&member_path, &data, memory)?;
        arrays.push((name.trim_end_matches(".npy").to_string(), array));
    }
    let names: Vec<String> = arrays.iter().map(|(n, _)| n.clone()).collect();
    let pick = |wanted: &[&str], fallback: &dyn Fn(&Array) -> bool| -> Option<usize> {
        wanted
            .iter()
            .find_map(|w| names.iter().position(|n| n == w))
            .or_else(|| {
                let fits: Vec<usize> = (0..arrays.len())
                    .filter(|&i| fallback(&arrays[i].1))
                    .collect();
                (fits.len() == 1).then(|| fits[0])
            })
    };
    let x = pick(&FEATURE_NAMES, &|a: &Array| a.cols > 1);
    let y = pick(&LABEL_NAMES, &|a: &Array| a.cols == 1).filter(|&y| Some(y) != x);
    let Some(x) = x.or_else(|| (arrays.len() == 1).then_some(0)) else {
        return Err(format_err(
            path,
            format!(
                "which array holds the features? name it x (and the labels y); the archive holds: {}",
                if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
            ),
        ));
    };
    let mut taken: Vec<Option<Array>> = arrays.into_iter().map(|(_, a)| Some(a)).collect();
    let features = taken[x]
        .take()
        .ok_or_else(|| format_err(path, "no features"))?;
    let labels = y.and_then(|y| {
        let p = PathBuf::from(format!("{}:{}", path.display(), names[y]));
        taken[y].take().map(|a| (p, a))
    });
    table_of(
        &PathBuf::from(format!("{}:{}", path.display(), names[x])),
        features,
        labels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_becomes_row_major() {
        // [[1, 2, 3], [4, 5, 6]] stored column by column.
        let f = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        assert_eq!(fortran_to_c(&f, &[2, 3]), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(fortran_to_c(&[1.0, 2.0], &[2]), [1.0, 2.0]);
    }
}
