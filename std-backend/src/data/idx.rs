//! Reading and writing IDX files, the format of MNIST and Fashion-MNIST,
//! raw or gzip-compressed.
//!
//! An IDX file is a big-endian header followed by the data: two zero bytes,
//! a type byte (`0x08` for `u8`, the only type supported here), the number
//! of dimensions, then one `u32` size per dimension. The first four bytes
//! read as a big-endian `u32` are the *magic number*: `2051` (`0x00000803`)
//! for `u8` images `[n, rows, cols]`, `2049` (`0x00000801`) for `u8` labels
//! `[n]`.
//!
//! A file is decompressed when its name ends in `.gz` or it starts with the
//! gzip magic bytes `1f 8b`.

use super::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

/// The magic number of an IDX file of `u8` images `[n, rows, cols]`.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of `u8` labels `[n]`.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const U8_TYPE: u8 = 0x08;

/// An IDX array of bytes: its dimensions and its row-major data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension (first: the number of items).
    pub dims: Vec<usize>,
    /// `dims.iter().product()` bytes, row-major.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The magic number of this array's file: `0x0000_08NN` for `NN`
    /// dimensions of `u8`.
    pub fn magic(&self) -> u32 {
        (u32::from(U8_TYPE) << 8) | self.dims.len() as u32
    }
}

/// `u8` images as an IDX file holds them: `count` images of `rows × cols`
/// pixels, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// The number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Pixels per row.
    pub cols: usize,
    /// `count · rows · cols` pixels.
    pub pixels: Vec<u8>,
}

/// Reads a file's bytes, decompressing it when it is gzip (by extension or
/// magic bytes).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_maybe_gz(path, bytes)
}

/// Most bytes a gzip file may decompress to: 4 GiB. More is refused with an
/// error (a decompression bomb, or data too large to load in memory).
pub const MAX_DECOMPRESSED: u64 = 1 << 32;

/// Decompresses `bytes` (the content of `path`, which names it in errors)
/// when they are gzip, by `path`'s extension or the magic bytes. Output
/// beyond [`MAX_DECOMPRESSED`], or that memory cannot hold, is an error,
/// not an abort.
pub fn decode_maybe_gz(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    decode_maybe_gz_limited(path, bytes, MAX_DECOMPRESSED)
}

fn decode_maybe_gz_limited(path: &Path, bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>> {
    let by_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if !(by_name || bytes.starts_with(&[0x1f, 0x8b])) {
        return Ok(bytes);
    }
    let too_large = |what: String| DataError::Format {
        path: path.to_path_buf(),
        what,
    };
    let mut out: Vec<u8> = Vec::new();
    // Grown as the data comes (fallibly), not sized by the file's claims.
    let mut decoder = MultiGzDecoder::new(&bytes[..]).take(limit.saturating_add(1));
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(DataError::Gzip {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if out.len() as u64 + n as u64 > limit {
            return Err(too_large(format!(
                "gzip data decompresses to more than {limit} bytes"
            )));
        }
        out.try_reserve(n).map_err(|_| {
            too_large(format!(
                "gzip data too large to hold in memory (over {} bytes)",
                out.len()
            ))
        })?;
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// Reads an IDX file of `u8` (raw or gzip) of any rank.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    parse_idx_vec(path, read_maybe_gz(path)?, None)
}

/// Parses the (decompressed) content of an IDX file of `u8`; `path` names
/// it in errors. With `expect_magic`, any other magic number is an error.
pub fn parse_idx(path: &Path, bytes: &[u8], expect_magic: Option<u32>) -> Result<IdxArray> {
    let (dims, header_len) = parse_header(path, bytes, expect_magic)?;
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// As [`parse_idx`], reusing `bytes` for the data.
fn parse_idx_vec(path: &Path, mut bytes: Vec<u8>, expect_magic: Option<u32>) -> Result<IdxArray> {
    let (dims, header_len) = parse_header(path, &bytes, expect_magic)?;
    bytes.drain(..header_len);
    Ok(IdxArray { dims, data: bytes })
}

/// Checks an IDX file's header against its length: the dimensions and the
/// header's length.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    expect_magic: Option<u32>,
) -> Result<(Vec<usize>, usize)> {
    let truncated = |what, expected| DataError::Truncated {
        path: path.to_path_buf(),
        what,
        expected,
        found: bytes.len(),
    };
    let head: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| truncated("the magic number", 4))?;
    let magic = u32::from_be_bytes(head);
    if let Some(expected) = expect_magic {
        if magic != expected {
            return Err(DataError::BadMagic {
                path: path.to_path_buf(),
                found: magic,
                expected,
                what: magic_name(expected),
            });
        }
    }
    if head[0] != 0 || head[1] != 0 || head[2] != U8_TYPE || head[3] == 0 {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
            expected: (u32::from(U8_TYPE) << 8) | u32::from(head[3].max(1)),
            what: "IDX of u8: 00 00 08 followed by a non-zero rank",
        });
    }
    let rank = usize::from(head[3]);
    let header_len = 4 + 4 * rank;
    let dims_bytes = bytes
        .get(4..header_len)
        .ok_or_else(|| truncated("the header", header_len))?;
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header_len))
        .ok_or_else(|| DataError::Format {
            path: path.to_path_buf(),
            what: format!("dimensions {dims:?} are too large"),
        })?;
    if bytes.len() < numel {
        return Err(truncated("header and data", numel));
    }
    if bytes.len() > numel {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            extra: bytes.len() - numel,
        });
    }
    Ok((dims, header_len))
}

fn magic_name(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "IDX images of u8",
        LABELS_MAGIC => "IDX labels of u8",
        _ => "IDX of u8",
    }
}

/// Reads an IDX file of `u8` images `[n, rows, cols]` (magic 2051).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    images_from(
        path,
        parse_idx_vec(path, read_maybe_gz(path)?, Some(IMAGES_MAGIC))?,
    )
}

/// Parses the (decompressed) content of an IDX image file; `path` names it
/// in errors.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<IdxImages> {
    images_from(path, parse_idx(path, bytes, Some(IMAGES_MAGIC))?)
}

fn images_from(path: &Path, a: IdxArray) -> Result<IdxImages> {
    match a.dims[..] {
        [count, rows, cols] => Ok(IdxImages {
            count,
            rows,
            cols,
            pixels: a.data,
        }),
        _ => unreachable_rank(path, &a.dims),
    }
}

/// Reads an IDX file of `u8` labels `[n]` (magic 2049).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    labels_from(
        path,
        parse_idx_vec(path, read_maybe_gz(path)?, Some(LABELS_MAGIC))?,
    )
}

/// Parses the (decompressed) content of an IDX label file; `path` names it
/// in errors.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    labels_from(path, parse_idx(path, bytes, Some(LABELS_MAGIC))?)
}

fn labels_from(path: &Path, a: IdxArray) -> Result<Vec<u8>> {
    match a.dims[..] {
        [_] => Ok(a.data),
        _ => unreachable_rank(path, &a.dims),
    }
}

// The magic number fixes the rank, so this is not reached; it is an error
// rather than a panic all the same.
fn unreachable_rank<T>(path: &Path, dims: &[usize]) -> Result<T> {
    Err(DataError::Format {
        path: path.to_path_buf(),
        what: format!("unexpected dimensions {dims:?}"),
    })
}

/// The bytes of an IDX file of `u8` with the given dimensions (uncompressed).
/// Fails when `data` does not have `dims.iter().product()` bytes, there are
/// no or more than 255 dimensions, or a dimension does not fit in a `u32`.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    if dims.is_empty() || dims.len() > 255 {
        return Err(DataError::Invalid(format!(
            "an IDX file has 1 to 255 dimensions, not {}",
            dims.len()
        )));
    }
    if dims.iter().product::<usize>() != data.len() {
        return Err(DataError::Invalid(format!(
            "dimensions {dims:?} do not match {} bytes",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, U8_TYPE, dims.len() as u8]);
    for &d in dims {
        let d = u32::try_from(d)
            .map_err(|_| DataError::Invalid(format!("dimension {d} does not fit in a u32")))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Writes an IDX file of `u8`, gzip-compressed (at the best compression)
/// when `path` ends in `.gz`.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    let bytes = encode_idx(dims, data)?;
    let write_err = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let bytes = if gz {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&bytes).map_err(write_err)?;
        enc.finish().map_err(write_err)?
    } else {
        bytes
    };
    fs::write(path, bytes).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_big_endian() {
        let b = encode_idx(&[2, 1, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(&b[..4], &IMAGES_MAGIC.to_be_bytes());
        assert_eq!(&b[4..16], &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3]);
        let p = Path::new("x.idx");
        let img = parse_idx_images(p, &b).unwrap();
        assert_eq!((img.count, img.rows, img.cols), (2, 1, 3));
        assert_eq!(img.pixels, vec![1, 2, 3, 4, 5, 6]);
        let e = parse_idx_labels(p, &b).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::BadMagic {
                    found: 2051,
                    expected: 2049,
                    ..
                }
            ),
            "{e}"
        );
        assert!(encode_idx(&[2, 2], &[0; 3]).is_err());
        assert!(encode_idx(&[], &[]).is_err());
    }

    #[test]
    fn gzip_output_is_bounded() {
        let p = Path::new("z.idx.gz");
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&[0u8; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(
            decode_maybe_gz_limited(p, gz.clone(), 10_000)
                .unwrap()
                .len(),
            10_000
        );
        let e = decode_maybe_gz_limited(p, gz, 9_999).unwrap_err();
        assert!(
            e.to_string()
                .contains("decompresses to more than 9999 bytes"),
            "{e}"
        );
    }

    #[test]
    fn short_and_long_inputs() {
        let p = Path::new("y.idx");
        let b = encode_idx(&[3], &[0, 1, 2]).unwrap();
        for cut in 0..b.len() {
            let e = parse_idx_labels(p, &b[..cut]).unwrap_err();
            assert!(matches!(e, DataError::Truncated { .. }), "{cut}: {e}");
        }
        let mut long = b.clone();
        long.push(9);
        assert!(matches!(
            parse_idx_labels(p, &long),
            Err(DataError::TrailingData { extra: 1, .. })
        ));
        // A non-u8 type (0x0D: f32) is refused.
        assert!(matches!(
            parse_idx(p, &[0, 0, 0x0D, 1, 0, 0, 0, 0], None),
            Err(DataError::BadMagic { .. })
        ));
    }
}
