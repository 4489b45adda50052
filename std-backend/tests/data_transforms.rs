//! Transforms: shapes kept, identities, normalisation's arithmetic, noise
//! statistics, and seeded reproducibility.

use ember_nn_core::Rng;
use ember_nn_std::data::transform::{
    flip_horizontal, rotate, shift, Compose, GaussianNoise, Normalize, RandomHorizontalFlip,
    RandomRotation, RandomShift, Transform,
};
use ember_nn_std::data::{Dataset, FashionMnist, ImageDims, Split};

const D: ImageDims = ImageDims::new(1, 28, 28);

/// A 28×28 test image: a bright blob off-centre on a dark background.
fn image() -> Vec<f32> {
    (0..784)
        .map(|i| {
            let (y, x) = ((i / 28) as f32, (i % 28) as f32);
            let r2 = (y - 12.0).powi(2) + (x - 10.0).powi(2);
            (-r2 / 8.0).exp()
        })
        .collect()
}

#[test]
fn every_transform_keeps_the_shape() {
    let all: Vec<Box<dyn Transform>> = vec![
        Box::new(Normalize::new(0.5, 0.25)),
        Box::new(GaussianNoise::new(0.1)),
        Box::new(RandomShift::new(3)),
        Box::new(RandomRotation::new(15.0)),
        Box::new(RandomHorizontalFlip::new(0.5)),
    ];
    let mut rng = Rng::new(0);
    for t in &all {
        let mut x = image();
        t.apply(&mut x, D, &mut rng);
        assert_eq!(x.len(), 784);
        assert!(x.iter().all(|v| v.is_finite()));
    }
    let mut x = image();
    Compose::from(all).apply(&mut x, D, &mut rng);
    assert_eq!(x.len(), 784);
}

#[test]
fn flip_twice_is_the_identity() {
    let x0 = image();
    let mut x = x0.clone();
    flip_horizontal(&mut x, D);
    assert_ne!(x, x0);
    assert_eq!(x[0], x0[27]);
    flip_horizontal(&mut x, D);
    assert_eq!(x, x0);
    let flip = RandomHorizontalFlip::always();
    let mut rng = Rng::new(1);
    flip.apply(&mut x, D, &mut rng);
    flip.apply(&mut x, D, &mut rng);
    assert_eq!(x, x0);
    // p = 0 never flips.
    RandomHorizontalFlip::new(0.0).apply(&mut x, D, &mut rng);
    assert_eq!(x, x0);
}

#[test]
fn zero_shift_and_zero_rotation_are_the_identity() {
    let x0 = image();
    let mut x = x0.clone();
    shift(&mut x, D, 0, 0);
    rotate(&mut x, D, 0.0);
    let mut rng = Rng::new(2);
    for _ in 0..10 {
        RandomShift::new(0).apply(&mut x, D, &mut rng);
        RandomRotation::new(0.0).apply(&mut x, D, &mut rng);
    }
    assert_eq!(x, x0);
    // Shifting there and back loses only what fell off the edge (nothing
    // here: the blob is far from the border).
    shift(&mut x, D, 2, -3);
    assert_ne!(x, x0);
    shift(&mut x, D, -2, 3);
    let err: f32 = x
        .iter()
        .zip(&x0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-3, "{err}");
}

#[test]
fn shifts_and_rotations_stay_within_bounds() {
    let x0 = image();
    let mass0: f32 = x0.iter().sum();
    let mut rng = Rng::new(3);
    for _ in 0..50 {
        let mut x = x0.clone();
        RandomShift::new(2).apply(&mut x, D, &mut rng);
        let mass: f32 = x.iter().sum();
        assert!((mass - mass0).abs() / mass0 < 1e-3, "shift lost mass");
        let mut x = x0.clone();
        RandomRotation::new(15.0).apply(&mut x, D, &mut rng);
        let mass: f32 = x.iter().sum();
        assert!((mass - mass0).abs() / mass0 < 0.05, "rotation changed mass");
        assert!(x.iter().all(|&v| (0.0..=1.0 + 1e-6).contains(&v)));
    }
}

#[test]
fn normalize_math() {
    let mut x = vec![0.0, 0.5, 1.0, 0.25];
    Normalize::new(0.5, 0.25).apply(&mut x, ImageDims::row(4), &mut Rng::new(0));
    assert_eq!(x, [-2.0, 0.0, 2.0, -1.0]);
    // Per channel: two 1×2 planes.
    let mut x = vec![1.0, 3.0, 1.0, 3.0];
    Normalize::per_channel(&[1.0, 2.0], &[2.0, 0.5]).apply(
        &mut x,
        ImageDims::new(2, 1, 2),
        &mut Rng::new(0),
    );
    assert_eq!(x, [0.0, 1.0, -2.0, 2.0]);
    // Normalising the built-in subset with the data set's statistics gives
    // roughly zero mean and unit variance.
    let train = FashionMnist::builtin(Split::Train).unwrap();
    let norm = Normalize::new(FashionMnist::MEAN, FashionMnist::STD);
    let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0usize);
    for i in 0..train.len() {
        let mut x = train.get(i).unwrap().features.to_vec();
        norm.apply(&mut x, D, &mut Rng::new(0));
        s += x.iter().map(|&v| f64::from(v)).sum::<f64>();
        s2 += x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        n += x.len();
    }
    let mean = s / n as f64;
    let var = s2 / n as f64 - mean * mean;
    assert!(mean.abs() < 0.02, "{mean}");
    assert!((var - 1.0).abs() < 0.05, "{var}");
}

#[test]
fn gaussian_noise_statistics() {
    let mut x = vec![1.0f32; 20_000];
    GaussianNoise::new(0.5).apply(&mut x, ImageDims::row(20_000), &mut Rng::new(9));
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
    assert!((mean - 1.0).abs() < 0.02, "{mean}");
    assert!((std - 0.5).abs() < 0.02, "{std}");
}

#[test]
fn same_seed_same_augmentation() {
    let t = Compose::new()
        .then(RandomRotation::new(15.0))
        .then(RandomShift::new(2))
        .then(RandomHorizontalFlip::new(0.5))
        .then(GaussianNoise::new(0.05));
    let run = |seed| {
        let mut x = image();
        t.apply(&mut x, D, &mut Rng::new(seed));
        x
    };
    assert_eq!(run(4), run(4));
    assert_ne!(run(4), run(5));
}
