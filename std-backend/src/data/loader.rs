//! Mini-batches from a [`Dataset`]: seeded reshuffling every epoch,
//! augmentation in training mode, parallel assembly and prefetching.

use super::dataset::{Dataset, ImageDims};
use super::transform::Transform;
use ember_nn_core::Rng;
use rayon::prelude::*;
use std::fmt;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Batches with at least this many values (or any transform) are assembled
/// in parallel; smaller ones are not worth the hand-off.
const PARALLEL_VALUES: usize = 1 << 14;

/// One mini-batch: `len()` samples copied into a contiguous row-major
/// `[len, feature_len]` matrix, with their labels.
///
/// Its features go straight into a tensor:
/// `g.from_slice((batch.len(), Const::<784>), &batch.features)`.
#[derive(Clone, Debug, PartialEq)]
pub struct MiniBatch {
    /// The features, row-major `[len, feature_len]`, augmented and
    /// transformed.
    pub features: Vec<f32>,
    /// The labels, one per row.
    pub labels: Vec<usize>,
    /// The float targets, row-major `[len, target_len]`: empty for a
    /// classification data set ([`Dataset::target_len`] 0).
    pub targets: Vec<f32>,
    /// The number of targets per row.
    pub target_len: usize,
    /// Each row's index in the data set.
    pub indices: Vec<usize>,
    /// The number of features per row.
    pub feature_len: usize,
    /// This batch's number in its epoch (0-based).
    pub index: usize,
}

impl MiniBatch {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The features of row `i`, if there is one.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.feature_len)?;
        self.features
            .get(start..start.checked_add(self.feature_len)?)
    }
}

/// A [`DataLoader`]'s random state between epochs, for checkpoints: restore
/// it with [`DataLoader::set_state`] and the next epochs repeat exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoaderState {
    /// The generator's state ([`Rng::state`]).
    pub rng: [u32; 4],
    /// The number of epochs started.
    pub epoch: u64,
}

/// Iterates over a data set in mini-batches, like PyTorch's `DataLoader`.
///
/// Each call to [`iter`](Self::iter) is one epoch. With
/// [`shuffle`](Self::shuffle), the order is a fresh permutation drawn from
/// the loader's seeded [`Rng`], different every epoch and the same on every
/// run with the same seed. In training mode (the default) each sample goes
/// through the [`augment`](Self::augment) transform, then through
/// [`transform`](Self::transform), which is also applied in evaluation mode
/// (normalisation belongs there). Each sample's randomness comes from a
/// generator derived from the epoch and the sample's position in it, so the
/// batches do not depend on threads or timing.
///
/// The samples of a batch are copied (and transformed) in parallel with
/// rayon, and with [`prefetch`](Self::prefetch) above 0 (default 2) a
/// background thread prepares the next batches while the current one is
/// used.
///
/// ```
/// use ember_nn_core::prelude::*;
/// use ember_nn_std::data::{DataLoader, Dataset, TensorDataset};
///
/// let features: Vec<f32> = (0..20).map(|v| v as f32).collect();
/// let labels = vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
/// let data = TensorDataset::new(features, labels, 2, 2)?;
/// let mut loader = DataLoader::new(data, 4).shuffle(true).seed(42);
///
/// let sizes: Vec<usize> = loader.iter().map(|b| b.len()).collect();
/// assert_eq!(sizes, [4, 4, 2]);
///
/// let mut buf = vec![0.0f32; 1024];
/// let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// for batch in &mut loader {
///     let g = Graph::new(&mut mem);
///     let x = g.from_slice((batch.len(), Const::<2>), &batch.features);
///     let mut out = vec![0.0; batch.features.len()];
///     x.read(&mut out)?;
///     assert_eq!(out, batch.features);
/// }
/// assert_eq!(loader.epoch(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DataLoader<D: Dataset + ?Sized + 'static> {
    dataset: Arc<D>,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    training: bool,
    prefetch: usize,
    augment: Option<Arc<dyn Transform>>,
    transform: Option<Arc<dyn Transform>>,
    rng: Rng,
    epoch: u64,
}

impl<D: Dataset + ?Sized + 'static> fmt::Debug for DataLoader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataLoader")
            .field("samples", &self.dataset.len())
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("drop_last", &self.drop_last)
            .field("training", &self.training)
            .field("prefetch", &self.prefetch)
            .field("augment", &self.augment.is_some())
            .field("transform", &self.transform.is_some())
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl<D: Dataset + 'static> DataLoader<D> {
    /// Batches of `batch_size` samples (at least 1) of `dataset`, in order,
    /// keeping the last smaller batch, seed 0, training mode, prefetching 2
    /// batches. (An `Arc<D>` is a data set too, for one shared with other
    /// code; see also [`from_arc`](Self::from_arc).)
    pub fn new(dataset: D, batch_size: usize) -> Self {
        Self::from_arc(Arc::new(dataset), batch_size)
    }
}

impl<D: Dataset + ?Sized + 'static> DataLoader<D> {
    /// As [`new`](Self::new), for a shared data set, which may be a trait
    /// object (`Arc<dyn Dataset>`).
    pub fn from_arc(dataset: Arc<D>, batch_size: usize) -> Self {
        DataLoader {
            dataset,
            batch_size: batch_size.max(1),
            shuffle: false,
            drop_last: false,
            training: true,
            prefetch: 2,
            augment: None,
            transform: None,
            rng: Rng::new(0),
            epoch: 0,
        }
    }

    /// Reshuffles the samples at the start of every epoch.
    #[must_use]
    pub fn shuffle(mut self, yes: bool) -> Self {
        self.shuffle = yes;
        self
    }

    /// Seeds the generator (and restarts the epoch count).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self.epoch = 0;
        self
    }

    /// Drops the last batch of an epoch when it is smaller than the others.
    #[must_use]
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }

    /// Prepares up to `depth` batches ahead on a background thread; 0
    /// prepares each batch when it is asked for.
    #[must_use]
    pub fn prefetch(mut self, depth: usize) -> Self {
        self.prefetch = depth;
        self
    }

    /// The augmentation applied to each sample in training mode only.
    #[must_use]
    pub fn augment(mut self, t: impl Transform + 'static) -> Self {
        self.augment = Some(Arc::new(t));
        self
    }

    /// The transform applied to each sample in both modes, after any
    /// augmentation (e.g. [`Normalize`](super::transform::Normalize)).
    #[must_use]
    pub fn transform(mut self, t: impl Transform + 'static) -> Self {
        self.transform = Some(Arc::new(t));
        self
    }

    /// Switches between training mode (augmentation on) and evaluation mode
    /// (augmentation off).
    pub fn set_training(&mut self, yes: bool) {
        self.training = yes;
    }

    /// Whether the loader is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The data set.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The number of samples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The number of batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// Whether an epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of epochs started.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The random state, to save between epochs.
    pub fn state(&self) -> LoaderState {
        LoaderState {
            rng: self.rng.state(),
            epoch: self.epoch,
        }
    }

    /// Restores a state saved by [`state`](Self::state).
    pub fn set_state(&mut self, state: LoaderState) {
        self.rng = Rng::from_state(state.rng);
        self.epoch = state.epoch;
    }

    /// Starts an epoch: its batches, in order.
    pub fn iter(&mut self) -> Batches<D> {
        self.iter_from(0)
    }

    /// Starts an epoch but skips its first `first` batches without preparing
    /// them: after restoring the state saved at the start of an interrupted
    /// epoch, this resumes it exactly where it stopped.
    pub fn iter_from(&mut self, first: usize) -> Batches<D> {
        let n = self.dataset.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.shuffle {
            self.rng.shuffle(&mut order);
        }
        let seed = (u64::from(self.rng.next_u32()) << 32) | u64::from(self.rng.next_u32());
        self.epoch += 1;

        let feature_len = self.dataset.feature_len();
        let dims = self
            .dataset
            .image_dims()
            .filter(|d| d.numel() == feature_len)
            .unwrap_or(ImageDims::row(feature_len));
        let plan = Arc::new(Plan {
            dataset: Arc::clone(&self.dataset),
            order,
            batch_size: self.batch_size,
            seed,
            augment: self.augment.clone().filter(|_| self.training),
            transform: self.transform.clone(),
            dims,
            feature_len,
        });
        let end = self.len();
        let next = first.min(end);
        let mut batches = Batches {
            plan,
            next,
            end,
            rx: None,
            worker: None,
        };
        if self.prefetch > 0 && end > next {
            let (tx, rx) = sync_channel(self.prefetch - 1);
            let plan = Arc::clone(&batches.plan);
            let spawned = std::thread::Builder::new()
                .name("ember-data-prefetch".into())
                .spawn(move || {
                    for b in next..end {
                        if tx.send(plan.batch(b)).is_err() {
                            break;
                        }
                    }
                });
            // Without a thread, batches are prepared on demand.
            if let Ok(handle) = spawned {
                batches.rx = Some(rx);
                batches.worker = Some(handle);
            }
        }
        batches
    }
}

impl<D: Dataset + ?Sized + 'static> IntoIterator for &mut DataLoader<D> {
    type Item = MiniBatch;
    type IntoIter = Batches<D>;

    /// One epoch: [`DataLoader::iter`].
    fn into_iter(self) -> Batches<D> {
        self.iter()
    }
}

/// What an epoch needs, shared with the prefetching thread.
struct Plan<D: ?Sized> {
    dataset: Arc<D>,
    order: Vec<usize>,
    batch_size: usize,
    seed: u64,
    augment: Option<Arc<dyn Transform>>,
    transform: Option<Arc<dyn Transform>>,
    dims: ImageDims,
    feature_len: usize,
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<D: Dataset + ?Sized> Plan<D> {
    /// The generator of the sample at `position` in the epoch.
    fn sample_rng(&self, position: usize) -> Rng {
        Rng::new(self.seed ^ mix((position as u64).wrapping_add(0x632B_E59B_D9B4_E019)))
    }

    fn batch(&self, index: usize) -> MiniBatch {
        let start = (index * self.batch_size).min(self.order.len());
        let end = (start + self.batch_size).min(self.order.len());
        let indices = self.order[start..end].to_vec();
        let d = self.feature_len;
        let labels = indices
            .iter()
            .map(|&i| self.dataset.get(i).map_or(0, |s| s.label))
            .collect();
        let mut features = vec![0.0f32; indices.len() * d];
        let transforms = self.augment.is_some() || self.transform.is_some();
        let fill = |(j, row): (usize, &mut [f32])| {
            if let Some(s) = self.dataset.get(indices[j]) {
                let k = s.features.len().min(d);
                row[..k].copy_from_slice(&s.features[..k]);
            }
            if transforms {
                let mut rng = self.sample_rng(start + j);
                if let Some(t) = &self.augment {
                    t.apply(row, self.dims, &mut rng);
                }
                if let Some(t) = &self.transform {
                    t.apply(row, self.dims, &mut rng);
                }
            }
        };
        if d > 0 {
            if transforms || features.len() >= PARALLEL_VALUES {
                features.par_chunks_mut(d).enumerate().for_each(fill);
            } else {
                features.chunks_mut(d).enumerate().for_each(fill);
            }
        }
        let target_len = self.dataset.target_len();
        let targets = if target_len > 0 {
            indices
                .iter()
                .flat_map(|&i| {
                    self.dataset
                        .target(i)
                        .map_or_else(|| vec![0.0; target_len], <[f32]>::to_vec)
                })
                .collect()
        } else {
            Vec::new()
        };
        MiniBatch {
            features,
            labels,
            targets,
            target_len,
            indices,
            feature_len: d,
            index,
        }
    }
}

/// The batches of one epoch, from [`DataLoader::iter`].
///
/// Dropping it early stops the prefetching thread.
pub struct Batches<D: Dataset + ?Sized + 'static> {
    plan: Arc<Plan<D>>,
    next: usize,
    end: usize,
    rx: Option<Receiver<MiniBatch>>,
    worker: Option<JoinHandle<()>>,
}

impl<D: Dataset + ?Sized + 'static> Batches<D> {
    /// The permutation of the data set's indices this epoch follows.
    pub fn order(&self) -> &[usize] {
        &self.plan.order
    }

    fn stop_worker(&mut self) -> std::thread::Result<()> {
        self.rx = None; // unblocks a worker waiting to send
        match self.worker.take() {
            Some(h) => h.join(),
            None => Ok(()),
        }
    }
}

/// Waits for the worker's next batch (`None` once it has stopped). On a
/// thread of rayon's pool, which the worker may need to assemble the batch,
/// the wait runs the pool's pending jobs instead of blocking it.
fn receive(rx: &Receiver<MiniBatch>) -> Option<MiniBatch> {
    if rayon::current_thread_index().is_none() {
        return rx.recv().ok();
    }
    loop {
        match rx.try_recv() {
            Ok(b) => return Some(b),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    match rx.recv_timeout(Duration::from_micros(200)) {
                        Ok(b) => return Some(b),
                        Err(RecvTimeoutError::Disconnected) => return None,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            }
        }
    }
}

impl<D: Dataset + ?Sized + 'static> Iterator for Batches<D> {
    type Item = MiniBatch;

    fn next(&mut self) -> Option<MiniBatch> {
        if self.next >= self.end {
            return None;
        }
        let received = self.rx.as_ref().and_then(receive);
        let batch = match received {
            Some(b) => b,
            None => {
                // No worker, or it stopped: a panic in a transform is
                // passed on; otherwise the batch is prepared here.
                if let Err(payload) = self.stop_worker() {
                    std::panic::resume_unwind(payload);
                }
                self.plan.batch(self.next)
            }
        };
        self.next += 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<D: Dataset + ?Sized + 'static> ExactSizeIterator for Batches<D> {}

impl<D: Dataset + ?Sized + 'static> Drop for Batches<D> {
    fn drop(&mut self) {
        // A worker's panic was already passed on by `next`, or is of no
        // interest once the epoch is abandoned.
        let _ = self.stop_worker();
    }
}

impl<D: Dataset + ?Sized + 'static> fmt::Debug for Batches<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batches")
            .field("next", &self.next)
            .field("end", &self.end)
            .field("prefetching", &self.worker.is_some())
            .finish()
    }
}
