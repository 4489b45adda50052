//! The DataLoader: batch sizes, drop_last, seeded reshuffling, checkpoints,
//! training and evaluation modes, and determinism across threads.

use ember_nn_core::Rng;
use ember_nn_std::data::transform::{
    GaussianNoise, Normalize, RandomRotation, RandomShift, Transform,
};
use ember_nn_std::data::{DataLoader, Dataset, ImageDims, MiniBatch, TensorDataset};
use std::sync::Arc;

/// `n` samples of `d` features; sample `i`'s features are `i*1000 + j` and
/// its label is `i % 3`.
fn numbered(n: usize, d: usize) -> TensorDataset {
    let features = (0..n)
        .flat_map(|i| (0..d).map(move |j| (i * 1000 + j) as f32))
        .collect();
    TensorDataset::new(features, (0..n).map(|i| i % 3).collect(), d, 3).unwrap()
}

fn sizes<D: Dataset + ?Sized + 'static>(loader: &mut DataLoader<D>) -> Vec<usize> {
    loader.iter().map(|b| b.len()).collect()
}

fn epoch<D: Dataset + ?Sized + 'static>(loader: &mut DataLoader<D>) -> Vec<MiniBatch> {
    loader.iter().collect()
}

#[test]
fn ten_samples_in_batches_of_four() {
    let mut loader = DataLoader::new(numbered(10, 3), 4);
    assert_eq!(loader.len(), 3);
    assert_eq!(sizes(&mut loader), [4, 4, 2]);
    let mut loader = DataLoader::new(numbered(10, 3), 4).drop_last(true);
    assert_eq!(loader.len(), 2);
    assert_eq!(sizes(&mut loader), [4, 4]);
    let mut loader = DataLoader::new(numbered(8, 3), 4).drop_last(true);
    assert_eq!(sizes(&mut loader), [4, 4]);
    let mut loader = DataLoader::new(numbered(3, 3), 4).drop_last(true);
    assert!(loader.is_empty());
    assert_eq!(loader.iter().count(), 0);
    let mut loader = DataLoader::new(numbered(0, 3), 4);
    assert_eq!(loader.iter().count(), 0);
}

#[test]
fn batches_hold_the_right_rows_and_labels() {
    let mut loader = DataLoader::new(numbered(10, 3), 4).shuffle(true).seed(5);
    let mut seen = Vec::new();
    for (k, b) in loader.iter().enumerate() {
        assert_eq!(b.index, k);
        assert_eq!(b.features.len(), b.len() * 3);
        for (r, &i) in b.indices.iter().enumerate() {
            let want = [
                (i * 1000) as f32,
                (i * 1000 + 1) as f32,
                (i * 1000 + 2) as f32,
            ];
            assert_eq!(b.row(r).unwrap(), &want);
            assert_eq!(b.labels[r], i % 3);
        }
        assert!(b.row(b.len()).is_none());
        seen.extend(b.indices);
    }
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

#[test]
fn unshuffled_order_is_the_data_set_order() {
    let mut loader = DataLoader::new(numbered(10, 1), 4);
    let order: Vec<usize> = loader.iter().flat_map(|b| b.indices).collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
}

#[test]
fn reshuffles_differ_per_epoch_and_repeat_with_the_seed() {
    let make = |seed| {
        DataLoader::new(numbered(100, 2), 16)
            .shuffle(true)
            .seed(seed)
    };
    let (mut a, mut b, mut c) = (make(7), make(7), make(8));
    let a1 = epoch(&mut a);
    let a2 = epoch(&mut a);
    assert_ne!(a1[0].indices, a2[0].indices, "epochs should differ");
    assert_eq!(epoch(&mut b), a1);
    assert_eq!(epoch(&mut b), a2);
    assert_ne!(epoch(&mut c)[0].indices, a1[0].indices);
    assert_eq!(a.epoch(), 2);
}

#[test]
fn state_restores_the_next_epochs_and_iter_from_resumes() {
    let make = || {
        DataLoader::new(numbered(50, 4), 8)
            .shuffle(true)
            .seed(3)
            .augment(GaussianNoise::new(0.5))
    };
    let mut a = make();
    epoch(&mut a);
    let saved = a.state();
    assert_eq!(saved.epoch, 1);
    let next = epoch(&mut a);

    let mut b = make();
    b.set_state(saved);
    assert_eq!(epoch(&mut b), next);

    // An epoch interrupted after 3 batches resumes at the 4th, identical.
    let mut c = make();
    c.set_state(saved);
    let resumed: Vec<MiniBatch> = c.iter_from(3).collect();
    assert_eq!(resumed.len(), next.len() - 3);
    assert_eq!(resumed[..], next[3..]);
    assert_eq!(c.state(), b.state());
}

#[test]
fn same_batches_with_or_without_prefetching() {
    let dims = ImageDims::new(1, 8, 8);
    let data = Arc::new(numbered(40, 64).with_image_dims(dims).unwrap());
    let make = |prefetch| {
        DataLoader::from_arc(Arc::clone(&data), 7)
            .shuffle(true)
            .seed(11)
            .prefetch(prefetch)
            .augment(
                ember_nn_std::data::transform::Compose::new()
                    .then(RandomRotation::new(15.0))
                    .then(RandomShift::new(2))
                    .then(GaussianNoise::new(0.1)),
            )
    };
    let reference = {
        let mut l = make(0);
        [epoch(&mut l), epoch(&mut l)]
    };
    for prefetch in [1, 2, 4] {
        let mut l = make(prefetch);
        assert_eq!(
            [epoch(&mut l), epoch(&mut l)],
            reference,
            "prefetch {prefetch}"
        );
    }
    // In another rayon pool size, too.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let single = pool.install(|| {
        let mut l = make(2);
        [epoch(&mut l), epoch(&mut l)]
    });
    assert_eq!(single, reference);
}

#[test]
fn augmentation_only_in_training_mode_transform_always() {
    let data = numbered(6, 4);
    let mut loader = DataLoader::new(data.clone(), 6)
        .augment(GaussianNoise::new(1.0))
        .transform(Normalize::new(1.0, 2.0));
    let train = loader.iter().next().unwrap();
    loader.set_training(false);
    assert!(!loader.is_training());
    let eval = loader.iter().next().unwrap();
    let want: Vec<f32> = data.features().iter().map(|v| (v - 1.0) / 2.0).collect();
    assert_eq!(eval.features, want);
    assert_ne!(train.features, want);
    assert!(train
        .features
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() < 4.0));
}

#[test]
fn abandoning_an_epoch_stops_the_worker() {
    let mut loader = DataLoader::new(numbered(1000, 10), 10).prefetch(2);
    for _ in 0..5 {
        let mut it = loader.iter();
        assert_eq!(it.len(), 100);
        it.next();
        assert_eq!(it.len(), 99);
        drop(it);
    }
    assert_eq!(loader.epoch(), 5);
}

struct Explodes;
impl Transform for Explodes {
    fn apply(&self, _x: &mut [f32], _dims: ImageDims, _rng: &mut Rng) {
        panic!("transform failed");
    }
}

#[test]
#[should_panic(expected = "transform failed")]
fn a_panicking_transform_is_passed_on() {
    let mut loader = DataLoader::new(numbered(4, 2), 2).augment(Explodes);
    for _ in loader.iter() {}
}

#[test]
fn works_with_a_borrowed_trait_object() {
    let data: Arc<dyn Dataset> = Arc::new(numbered(5, 2));
    let mut loader: DataLoader<dyn Dataset> = DataLoader::from_arc(data, 2);
    assert_eq!(sizes(&mut loader), [2, 2, 1]);
    assert_eq!(loader.dataset().len(), 5);
    assert_eq!(loader.batch_size(), 2);
}

#[test]
fn prefetching_inside_a_one_thread_rayon_pool_does_not_deadlock() {
    // The consumer occupies the pool's only thread; the worker assembles
    // batches (with transforms, so in parallel) on the global pool or, when
    // the consumer is itself on the global pool, through the consumer's
    // yields.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let n = pool.install(|| {
        let mut l = DataLoader::new(numbered(64, 16), 4).augment(GaussianNoise::new(0.1));
        l.iter().count()
    });
    assert_eq!(n, 16);
    let n = rayon::scope(|_| {
        let mut l = DataLoader::new(numbered(64, 16), 4).augment(GaussianNoise::new(0.1));
        l.iter().count()
    });
    assert_eq!(n, 16);
}
