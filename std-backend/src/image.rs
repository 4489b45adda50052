//! Reading an image to classify: PNG (8-bit grey, grey+alpha, RGB or RGBA) or
//! PGM (P2 or P5), converted to grey in `[0, 1]` and resized to the model's
//! input by nearest neighbour when needed.

use std::path::{Path, PathBuf};

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a supported image.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// A grey image, row-major, values in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Grey {
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// Pixels.
    pub pixels: Vec<f32>,
}

impl Grey {
    /// Nearest-neighbour resize.
    pub fn resize(&self, width: usize, height: usize) -> Grey {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let sx = (x * self.width / width.max(1)).min(self.width.saturating_sub(1));
                let sy = (y * self.height / height.max(1)).min(self.height.saturating_sub(1));
                pixels.push(
                    self.pixels
                        .get(sy * self.width + sx)
                        .copied()
                        .unwrap_or(0.0),
                );
            }
        }
        Grey {
            width,
            height,
            pixels,
        }
    }
}

/// Reads a PNG or PGM file.
pub fn read(path: &Path) -> Result<Grey, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.into(),
        source,
    })?;
    decode(path, &bytes)
}

/// Decodes the bytes of a PNG or PGM image (the content of `path`, which
/// names it in errors). Never panics, whatever `bytes` holds.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Grey, ImageError> {
    let fmt = |msg: String| ImageError::Format {
        path: path.into(),
        msg,
    };
    if bytes.starts_with(b"\x89PNG") {
        decode_png(bytes).map_err(fmt)
    } else if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        decode_pgm(bytes).map_err(fmt)
    } else {
        Err(fmt("not a PNG or PGM image".into()))
    }
}

/// Most pixels an image may have (PNG and PGM): 2^26, 8192 × 8192.
pub const MAX_PIXELS: usize = 1 << 26;

/// Bytes that deflate can expand one compressed byte to, at most.
const DEFLATE_MAX_RATIO: usize = 1032;

fn decode_png(bytes: &[u8]) -> Result<Grey, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    // The output buffer is sized by the header: check the header against the
    // file before allocating it, so that a few bytes claiming a huge image
    // are an error, not an allocation of gigabytes (or an abort).
    let info = reader.info();
    let (w, h) = (info.width as usize, info.height as usize);
    if w.checked_mul(h).is_none_or(|n| n > MAX_PIXELS) {
        return Err(format!(
            "unsupported PNG size {w}x{h} (at most {MAX_PIXELS} pixels)"
        ));
    }
    // The pixel data, without filter bytes, is at least this long once
    // inflated; deflate cannot make it from fewer than 1/1032 of its bytes.
    let packed = (w as u64 * info.bits_per_pixel() as u64).div_ceil(8) * h as u64;
    if packed > (bytes.len() as u64).saturating_mul(DEFLATE_MAX_RATIO as u64) {
        return Err(format!(
            "truncated PNG: {w}x{h} pixels cannot be in {} bytes",
            bytes.len()
        ));
    }
    // PNG palettes are RGB triples. png 0.18.1 accepts a PLTE chunk of any
    // length from 3 to 768 bytes and then panics expanding one whose length
    // is not a multiple of 3 (found by fuzzing; image-rs/image-png#694).
    if let Some(palette) = &info.palette {
        if palette.len() % 3 != 0 {
            return Err(format!(
                "malformed PNG palette: {} bytes are not RGB triples",
                palette.len()
            ));
        }
    }
    let size = reader.output_buffer_size().ok_or("image too large")?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let (w, h) = (info.width as usize, info.height as usize);
    let ch = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("indexed PNG after expansion".into()),
    };
    let pixels = buf[..w * h * ch]
        .chunks_exact(ch)
        .map(|p| {
            let g = if ch >= 3 {
                0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
            } else {
                f32::from(p[0])
            };
            g / 255.0
        })
        .collect();
    Ok(Grey {
        width: w,
        height: h,
        pixels,
    })
}

fn decode_pgm(bytes: &[u8]) -> Result<Grey, String> {
    // Header: magic, width, height, maxval, separated by whitespace and comments.
    let mut fields = Vec::new();
    let mut i = 2;
    while fields.len() < 3 && i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_digit() => {
                let s = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let v: usize = std::str::from_utf8(&bytes[s..i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or("bad PGM header number")?;
                fields.push(v);
            }
            _ => return Err("bad PGM header".into()),
        }
    }
    let [w, h, max] = fields[..] else {
        return Err("truncated PGM header".into());
    };
    if w == 0
        || h == 0
        || max == 0
        || max > 65535
        || w.checked_mul(h).is_none_or(|n| n > MAX_PIXELS)
    {
        return Err(format!("unsupported PGM size {w}x{h}, maxval {max}"));
    }
    let n = w * h;
    let pixels: Vec<f32> = if bytes.starts_with(b"P5") {
        let data = bytes.get(i + 1..).ok_or("truncated PGM data")?;
        if max < 256 {
            if data.len() < n {
                return Err(format!("truncated PGM data: {} of {n} pixels", data.len()));
            }
            data[..n]
                .iter()
                .map(|&v| f32::from(v) / max as f32)
                .collect()
        } else {
            if data.len() < 2 * n {
                return Err("truncated PGM data".into());
            }
            data.chunks_exact(2)
                .take(n)
                .map(|c| f32::from(u16::from_be_bytes([c[0], c[1]])) / max as f32)
                .collect()
        }
    } else {
        let text = std::str::from_utf8(&bytes[i..]).map_err(|_| "PGM data is not text")?;
        let v: Result<Vec<f32>, _> = text
            .split_whitespace()
            .take(n)
            .map(|t| t.parse::<f32>().map(|x| x / max as f32))
            .collect();
        let v = v.map_err(|_| "bad PGM pixel value")?;
        if v.len() < n {
            return Err("truncated PGM data".into());
        }
        v
    };
    Ok(Grey {
        width: w,
        height: h,
        pixels: pixels.into_iter().map(|p| p.clamp(0.0, 1.0)).collect(),
    })
}

/// Writes a grey image as binary PGM (for tests and exporting samples).
pub fn write_pgm(img: &Grey) -> Vec<u8> {
    let mut out = format!("P5\n{} {}\n255\n", img.width, img.height).into_bytes();
    out.extend(
        img.pixels
            .iter()
            .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgm_round_trip_png_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let img = Grey {
            width: 3,
            height: 2,
            pixels: vec![0.0, 0.5, 1.0, 1.0, 0.25, 0.0],
        };
        let p = dir.path().join("a.pgm");
        std::fs::write(&p, write_pgm(&img)).unwrap();
        let back = read(&p).unwrap();
        assert_eq!((back.width, back.height), (3, 2));
        for (a, b) in back.pixels.iter().zip(&img.pixels) {
            assert!((a - b).abs() < 0.003);
        }
        std::fs::write(&p, b"P2\n# comment\n2 1\n10\n0 10\n").unwrap();
        assert_eq!(read(&p).unwrap().pixels, vec![0.0, 1.0]);
        // PNG, written with the png crate.
        let pp = dir.path().join("a.png");
        {
            let f = std::fs::File::create(&pp).unwrap();
            let mut enc = png::Encoder::new(f, 2, 1);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            enc.write_header()
                .unwrap()
                .write_image_data(&[0, 255])
                .unwrap();
        }
        assert_eq!(read(&pp).unwrap().pixels, vec![0.0, 1.0]);
        assert_eq!(img.resize(6, 4).pixels.len(), 24);
        // Bad inputs name the file.
        std::fs::write(&p, b"P5\n3 2\n255\n\x01").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("a.pgm") && e.contains("truncated"), "{e}");
        std::fs::write(&p, b"GIF89a").unwrap();
        assert!(read(&p).is_err());
        std::fs::write(&pp, b"\x89PNG\r\n\x1a\nbroken").unwrap();
        assert!(read(&pp).is_err());
    }
}
