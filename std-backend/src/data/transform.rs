//! Transforms of one sample's features, in place: normalisation and the
//! augmentations of the PyTorch tutorials (noise, shifts, small rotations,
//! horizontal flips).
//!
//! A transform sees the features as an image of [`ImageDims`] (`C×H×W`,
//! row-major; a plain feature vector is one row) and draws its randomness
//! from the [`Rng`] it is given, so a seeded [`DataLoader`](super::DataLoader)
//! produces the same augmented batches on every run. Spatial transforms move
//! every channel the same way; values moved in from outside the image are 0.
//!
//! ```
//! use ember_nn_std::data::transform::*;
//! use ember_nn_std::data::{FashionMnist, ImageDims};
//! use ember_nn_core::Rng;
//!
//! let augment = Compose::new()
//!     .then(RandomRotation::new(15.0))
//!     .then(RandomShift::new(2))
//!     .then(RandomHorizontalFlip::new(0.5))
//!     .then(Normalize::new(FashionMnist::MEAN, FashionMnist::STD));
//! let mut image = vec![0.5f32; 28 * 28];
//! augment.apply(&mut image, ImageDims::new(1, 28, 28), &mut Rng::new(7));
//! assert_eq!(image.len(), 784);
//! ```

use super::dataset::ImageDims;
use ember_nn_core::Rng;
use std::fmt;

/// A change to one sample's features, in place.
///
/// `x` holds `dims.numel()` values; an implementation must not panic when it
/// holds another number (the built-in ones then transform the whole planes
/// that fit and leave the rest).
pub trait Transform: Send + Sync {
    /// Transforms `x`, an image of `dims`, drawing any randomness from `rng`.
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng);
}

impl<T: Transform + ?Sized> Transform for Box<T> {
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng) {
        (**self).apply(x, dims, rng)
    }
}

impl<T: Transform + ?Sized> Transform for std::sync::Arc<T> {
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng) {
        (**self).apply(x, dims, rng)
    }
}

/// Transforms applied one after the other (torchvision's `Compose`).
#[derive(Default)]
pub struct Compose {
    steps: Vec<Box<dyn Transform>>,
}

impl Compose {
    /// No transforms: the identity.
    pub fn new() -> Self {
        Compose::default()
    }

    /// Appends `t`, to run after the transforms already there.
    #[must_use]
    pub fn then(mut self, t: impl Transform + 'static) -> Self {
        self.steps.push(Box::new(t));
        self
    }

    /// Appends `t` in place.
    pub fn push(&mut self, t: impl Transform + 'static) {
        self.steps.push(Box::new(t));
    }

    /// The number of transforms.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no transforms.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl fmt::Debug for Compose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Compose({} transforms)", self.steps.len())
    }
}

impl From<Vec<Box<dyn Transform>>> for Compose {
    fn from(steps: Vec<Box<dyn Transform>>) -> Self {
        Compose { steps }
    }
}

impl Transform for Compose {
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng) {
        for t in &self.steps {
            t.apply(x, dims, rng);
        }
    }
}

/// The image's planes: `channels` chunks of `height · width` values (the
/// whole of `x` as one plane when the layout is degenerate).
fn planes(x: &mut [f32], dims: ImageDims) -> std::slice::ChunksExactMut<'_, f32> {
    let plane = dims.height * dims.width;
    x.chunks_exact_mut(if plane == 0 { x.len().max(1) } else { plane })
}

/// `x ← (x − mean[c]) / std[c]` for channel `c` (torchvision's
/// `Normalize`). Deterministic.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// The same mean and standard deviation for every channel.
    pub fn new(mean: f32, std: f32) -> Self {
        Normalize {
            mean: vec![mean],
            std: vec![std],
        }
    }

    /// One mean and standard deviation per channel; a channel beyond the
    /// lists' end uses their last values (an empty list means 0 or 1).
    pub fn per_channel(mean: &[f32], std: &[f32]) -> Self {
        Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }
}

impl Transform for Normalize {
    fn apply(&self, x: &mut [f32], dims: ImageDims, _rng: &mut Rng) {
        let pick =
            |v: &[f32], c: usize, default: f32| v.get(c).or(v.last()).copied().unwrap_or(default);
        for (c, plane) in planes(x, dims).enumerate() {
            let (m, s) = (pick(&self.mean, c, 0.0), pick(&self.std, c, 1.0));
            let inv = 1.0 / s;
            for v in plane {
                *v = (*v - m) * inv;
            }
        }
    }
}

/// Adds independent Gaussian noise of standard deviation `std` to every
/// value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianNoise {
    /// The noise's standard deviation.
    pub std: f32,
}

impl GaussianNoise {
    /// Noise of standard deviation `std`.
    pub fn new(std: f32) -> Self {
        GaussianNoise { std }
    }
}

impl Transform for GaussianNoise {
    fn apply(&self, x: &mut [f32], _dims: ImageDims, rng: &mut Rng) {
        // Box–Muller, using both of each pair of normal deviates.
        for pair in x.chunks_mut(2) {
            let u1 = 1.0 - rng.uniform(); // in (0, 1]: a finite logarithm
            let u2 = rng.uniform();
            let r = self.std * (-2.0 * u1.ln()).sqrt();
            let (sin, cos) = (std::f32::consts::TAU * u2).sin_cos();
            pair[0] += r * cos;
            if let Some(v) = pair.get_mut(1) {
                *v += r * sin;
            }
        }
    }
}

/// Mirrors the image left to right with probability `p` (torchvision's
/// `RandomHorizontalFlip`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomHorizontalFlip {
    /// The probability of a flip.
    pub p: f32,
}

impl RandomHorizontalFlip {
    /// Flips with probability `p` (0.5 in torchvision).
    pub fn new(p: f32) -> Self {
        RandomHorizontalFlip { p }
    }

    /// Flips every time.
    pub fn always() -> Self {
        RandomHorizontalFlip { p: 1.0 }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng) {
        if rng.uniform() < self.p {
            flip_horizontal(x, dims);
        }
    }
}

/// Mirrors every row of every channel left to right.
pub fn flip_horizontal(x: &mut [f32], dims: ImageDims) {
    if dims.width == 0 {
        return;
    }
    for plane in planes(x, dims) {
        for row in plane.chunks_exact_mut(dims.width) {
            row.reverse();
        }
    }
}

/// Shifts the image by a random whole number of pixels, independently in
/// each direction in `-max..=max`, filling with 0 (like torchvision's
/// `RandomCrop(size, padding=max)` or `RandomAffine(translate=...)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomShift {
    /// The largest shift, in pixels.
    pub max: usize,
}

impl RandomShift {
    /// Shifts of up to `max` pixels each way.
    pub fn new(max: usize) -> Self {
        RandomShift { max }
    }
}

impl Transform for RandomShift {
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng) {
        let span = u32::try_from(2 * self.max + 1).unwrap_or(u32::MAX);
        let max = self.max as isize;
        let dx = rng.below(span) as isize - max;
        let dy = rng.below(span) as isize - max;
        shift(x, dims, dx, dy);
    }
}

/// Moves the image `dx` pixels right and `dy` pixels down (negative: left,
/// up), filling the uncovered pixels with 0.
pub fn shift(x: &mut [f32], dims: ImageDims, dx: isize, dy: isize) {
    let (h, w) = (dims.height, dims.width);
    if (dx == 0 && dy == 0) || h == 0 || w == 0 {
        return;
    }
    let mut src = vec![0.0f32; h * w];
    for plane in planes(x, dims) {
        src.copy_from_slice(plane);
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            let sy = y as isize - dy;
            for (xx, v) in row.iter_mut().enumerate() {
                let sx = xx as isize - dx;
                *v = if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                    src[sy as usize * w + sx as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Rotates the image about its centre by an angle drawn uniformly from
/// `-degrees..degrees` (torchvision's `RandomRotation(degrees)`), with
/// bilinear interpolation and 0 outside.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomRotation {
    /// The largest angle, in degrees.
    pub degrees: f32,
}

impl RandomRotation {
    /// Rotations of up to `degrees` either way (15 is a usual choice for
    /// 28×28 images).
    pub fn new(degrees: f32) -> Self {
        RandomRotation { degrees }
    }
}

impl Transform for RandomRotation {
    fn apply(&self, x: &mut [f32], dims: ImageDims, rng: &mut Rng) {
        let angle = rng.uniform_in(-self.degrees, self.degrees);
        rotate(x, dims, angle);
    }
}

/// `⌊v⌋` for the small values of image coordinates, without a call to
/// `floorf` (the baseline x86-64 has no rounding instruction).
#[inline]
fn floor(v: f32) -> isize {
    let t = v as isize;
    if (t as f32) > v {
        t - 1
    } else {
        t
    }
}

/// Rotates the image counter-clockwise (as displayed, rows going down) by
/// `degrees` about its centre, with bilinear interpolation and 0 outside.
pub fn rotate(x: &mut [f32], dims: ImageDims, degrees: f32) {
    let (h, w) = (dims.height, dims.width);
    if degrees == 0.0 || h == 0 || w == 0 {
        return;
    }
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cy, cx) = ((h as f32 - 1.0) * 0.5, (w as f32 - 1.0) * 0.5);
    let mut src = vec![0.0f32; h * w];
    for plane in planes(x, dims) {
        src.copy_from_slice(plane);
        let at = |y: isize, x: isize| -> f32 {
            if (0..h as isize).contains(&y) && (0..w as isize).contains(&x) {
                src[y as usize * w + x as usize]
            } else {
                0.0
            }
        };
        for y in 0..h {
            // The inverse rotation maps each output pixel to its source;
            // along a row the source moves by (cos, sin) per pixel.
            let oy = y as f32 - cy;
            let mut sx = -cos * cx - sin * oy + cx;
            let mut sy = -sin * cx + cos * oy + cy;
            for out in &mut plane[y * w..(y + 1) * w] {
                let (x0, y0) = (floor(sx), floor(sy));
                let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                let inside = x0 >= 0 && y0 >= 0 && x0 + 1 < w as isize && y0 + 1 < h as isize;
                let (a, b, c, d) = if inside {
                    let i = y0 as usize * w + x0 as usize;
                    (src[i], src[i + 1], src[i + w], src[i + w + 1])
                } else {
                    (
                        at(y0, x0),
                        at(y0, x0 + 1),
                        at(y0 + 1, x0),
                        at(y0 + 1, x0 + 1),
                    )
                };
                let top = a + (b - a) * fx;
                let bottom = c + (d - c) * fx;
                *out = top + (bottom - top) * fy;
                sx += cos;
                sy += sin;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: ImageDims = ImageDims::new(1, 3, 4);

    fn img() -> Vec<f32> {
        (1..=12).map(|v| v as f32).collect()
    }

    #[test]
    fn shift_moves_and_fills_with_zero() {
        let mut x = img();
        shift(&mut x, D, 1, 0);
        assert_eq!(x, [0., 1., 2., 3., 0., 5., 6., 7., 0., 9., 10., 11.]);
        let mut x = img();
        shift(&mut x, D, -1, -1);
        assert_eq!(x, [6., 7., 8., 0., 10., 11., 12., 0., 0., 0., 0., 0.]);
        let mut x = img();
        shift(&mut x, D, 0, 2);
        assert_eq!(x, [0., 0., 0., 0., 0., 0., 0., 0., 1., 2., 3., 4.]);
        let mut x = img();
        shift(&mut x, D, 9, 0);
        assert!(x.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn rotation_by_90_degrees_permutes_a_square() {
        let d = ImageDims::new(1, 3, 3);
        let mut x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        rotate(&mut x, d, 90.0);
        // Counter-clockwise as displayed: the top row becomes the left column.
        let want = [3., 6., 9., 2., 5., 8., 1., 4., 7.];
        for (a, b) in x.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{x:?}");
        }
    }

    #[test]
    fn flip_reverses_rows_per_channel() {
        let mut x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        flip_horizontal(&mut x, ImageDims::new(2, 2, 2));
        assert_eq!(x, [1., 0., 3., 2., 5., 4., 7., 6.]);
    }

    #[test]
    fn odd_lengths_do_not_panic() {
        let mut rng = Rng::new(1);
        let all = Compose::new()
            .then(RandomRotation::new(15.0))
            .then(RandomShift::new(2))
            .then(RandomHorizontalFlip::always())
            .then(Normalize::per_channel(&[], &[]))
            .then(GaussianNoise::new(0.1));
        for len in [0usize, 1, 5, 13] {
            let mut x = vec![1.0; len];
            all.apply(&mut x, D, &mut rng);
            all.apply(&mut x, ImageDims::new(0, 0, 0), &mut rng);
            assert_eq!(x.len(), len);
        }
    }
}
