//! Transfer learning on the device: the deployed int8 model's feature layers
//! stay frozen in flash, and its last layer (the head, `Linear<64, 10>` for
//! the committed model) is trained in RAM on labelled images that arrive
//! one mini-batch at a time, as from a sensor. The images are shifted
//! (colour-inverted test images the model never saw, `cargo xtask
//! test-images`), so the deployed model does badly on them until the head
//! adapts.
//!
//! The code is the host's `nn` API: the head is an `nn::Linear` built in a
//! `Memory` arena and started from the deployed layer
//! (`Model::dequantize_layer`), each step is `Optimizer::zero_grad`, a
//! `Graph`, `forward`, `loss::cross_entropy`, `backward`, `Optimizer::step`,
//! and the learning rate follows an `nn::sched` scheduler. The frozen part is
//! an ordinary int8 forward through the deployed model
//! (`Model::features_u8`), dequantized to f32 features. No allocator; on the
//! host the same code runs as part of an ordinary program, and gives the
//! same head, bit for bit (`EXPECTED_HEAD_CRC`, checked by the firmware and
//! by the host test).

use crate::inference::{model, Net, INT8_MODEL, PIXELS};
use ember_core::deploy::{argmax, argmax_i8, crc32, dense_f32, Activation, Model};
use ember_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_core::nn::sched::{CosineAnnealingLR, LrScheduler};
use ember_core::nn::{self, Build, Forward, Linear, Optimizer, Rule, TrainBudget};
use ember_core::prelude::*;

/// Samples per mini-batch.
pub const BATCH: usize = 8;
/// The head's input features: the frozen layers' output.
pub const FEATURES: usize = model::LAST_INPUTS;
/// Classes.
pub const CLASSES: usize = model::OUTPUTS;
/// The trained part.
pub type Head = Linear<FEATURES, CLASSES>;
/// Passes over the stream of training images.
pub const PASSES: usize = 4;
/// The optimizer: SGD with momentum (one state plane: Adam's two would
/// take 2.6 KB more of RAM for no better head here).
pub const RULE: Rule = Rule::sgd_momentum(0.9);
/// The learning rate at the start (cosine-annealed over the passes).
pub const LR: f32 = 0.05;
/// What a training step needs, from the head's type, the batch, the loss
/// and the optimizer: parameters, gradients, momentum, and one step's graph
/// at its peak (`nn::train_budget`; a test holds it within 10% of real use).
pub const BUDGET: TrainBudget = nn::train_budget::<Head>(BATCH, Loss::CrossEntropy, RULE);
/// Floats of the arena.
pub const ARENA_FLOATS: usize = BUDGET.floats;
/// Node capacity of a training step's graph: the input's, the head's and
/// the loss's.
pub const NODES: usize = BUDGET.nodes;
/// RAM the fine-tuning may take on the device (arena and stack), bytes.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub const RAM_TARGET_BYTES: usize = 16 * 1024;
/// A training sample (features, forward, backward, update) must cost less
/// than this many int8 inferences of the whole model, in hundredths.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub const SAMPLE_COST_TARGET_HUNDREDTHS: u32 = 150;
/// Points the held-out accuracy must gain.
pub const REQUIRED_GAIN_POINTS: usize = 20;

/// Shifted images to learn from, `PIXELS` bytes each.
static TRAIN_IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/finetune-train-images.bin"));
/// Their labels.
static TRAIN_LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/finetune-train-labels.bin"));
/// Shifted held-out images.
static EVAL_IMAGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/finetune-eval-images.bin"));
/// Their labels.
static EVAL_LABELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/finetune-eval-labels.bin"));
/// CRC-32 of the trained head's parameters (little-endian f32, weight then
/// bias) that the host computes with this same code.
static EXPECTED_HEAD_CRC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/finetune-head.crc32"));

/// Why fine-tuning could not run.
#[derive(Clone, Copy, Debug)]
pub enum FinetuneError {
    /// The model file was rejected.
    Model(ember_core::deploy::FormatError),
    /// Inference failed.
    Infer(ember_core::deploy::InferError),
    /// The training graph or the arena failed.
    Train(Error),
}

impl core::fmt::Display for FinetuneError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FinetuneError::Model(e) => write!(f, "the int8 model was rejected: {e}"),
            FinetuneError::Infer(e) => write!(f, "inference failed: {e}"),
            FinetuneError::Train(e) => write!(f, "training failed: {e}"),
        }
    }
}

impl From<ember_core::deploy::FormatError> for FinetuneError {
    fn from(e: ember_core::deploy::FormatError) -> Self {
        FinetuneError::Model(e)
    }
}
impl From<ember_core::deploy::InferError> for FinetuneError {
    fn from(e: ember_core::deploy::InferError) -> Self {
        FinetuneError::Infer(e)
    }
}
impl From<Error> for FinetuneError {
    fn from(e: Error) -> Self {
        FinetuneError::Train(e)
    }
}

/// What a run measured; [`Report::passed`] is the verdict.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Held-out images right with the deployed model, before fine-tuning.
    pub before: usize,
    /// The same after.
    pub after: usize,
    /// Held-out images.
    pub eval: usize,
    /// Training samples processed (images × passes).
    pub samples: usize,
    /// Clock ticks spent training (features, forward, backward, update).
    pub train_ticks: u64,
    /// Floats of the arena the head and the optimizer keep.
    pub persistent_floats: usize,
    /// The most floats a training step's graph held on top of those (at the
    /// peak of backward).
    pub graph_floats: usize,
    /// Nodes a training step recorded (of [`NODES`]).
    pub graph_nodes: usize,
    /// CRC-32 of the trained head's parameters.
    pub head_crc: u32,
}

impl Report {
    /// Accuracy in per mille.
    pub fn permille(&self, right: usize) -> usize {
        (1000 * right + self.eval / 2) / self.eval.max(1)
    }

    /// The held-out accuracy gained at least [`REQUIRED_GAIN_POINTS`] and the
    /// head is the host's, bit for bit.
    pub fn passed(&self) -> bool {
        self.eval > 0
            && self.permille(self.after) >= self.permille(self.before) + 10 * REQUIRED_GAIN_POINTS
            && Some(self.head_crc) == expected_head_crc()
    }
}

/// The head CRC the host computed, if the file holds one.
pub fn expected_head_crc() -> Option<u32> {
    match EXPECTED_HEAD_CRC {
        [a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The head's weight and bias: slices of the arena (the weight is built
/// first, as `Linear::new` does).
fn head_slices<'b>(
    buf: &'b mut [f32],
    head: &Head,
) -> Result<(&'b mut [f32], &'b mut [f32]), Error> {
    let (w, b) = (head.weight.value, head.bias.value);
    if w.offset + w.len > b.offset || b.offset + b.len > buf.len() {
        return Err(Error::InvalidArgument {
            what: "the head's weight must precede its bias in the arena",
        });
    }
    let (lo, hi) = buf.split_at_mut(b.offset);
    Ok((&mut lo[w.offset..w.offset + w.len], &mut hi[..b.len]))
}

/// The frozen features of `image`, dequantized into `out`.
fn features(
    model: &Model<'_>,
    image: &[u8],
    scratch: &mut [i8],
    out: &mut [f32],
) -> Result<(), FinetuneError> {
    let frozen = model.layer_count() - 1;
    let q = model.features_u8(image, frozen, scratch)?;
    model.dequantize_output_of(frozen - 1, q, out)?;
    Ok(())
}

/// Held-out images the deployed model (all of it, int8) gets right.
#[inline(never)]
fn accuracy_before(model: &Model<'_>) -> Result<usize, FinetuneError> {
    let mut scratch = [0i8; 2 * model::WIDEST];
    let mut right = 0;
    for (image, &label) in EVAL_IMAGES.chunks_exact(PIXELS).zip(EVAL_LABELS) {
        let logits = model.infer_u8(image, &mut scratch)?;
        right += usize::from(argmax_i8(logits) == usize::from(label));
    }
    Ok(right)
}

/// One training step on a mini-batch as it arrives: the frozen features of
/// each image written straight into the graph's input (no staging copy of
/// the batch), then zero_grad, forward, loss, backward, step. Returns the
/// graph's peak floats and nodes and the batch's samples. (Out of line, like
/// the evaluations, so that the stack holds one phase's buffers at a time.)
#[inline(never)]
fn step(
    model: &Model<'_>,
    head: &Head,
    optimizer: &mut Optimizer<2, 1>,
    mem: &mut Memory<'_, Cpu>,
    images: &[u8],
    ys: &[u8],
) -> Result<(usize, usize, usize), FinetuneError> {
    let mut scratch = [0i8; 2 * model::WIDEST];
    let mut row = [0.0f32; FEATURES];
    let mut labels = [0usize; BATCH];
    let n = ys.len().min(images.len() / PIXELS).min(BATCH);
    optimizer.zero_grad(mem)?;
    let used = {
        let g = Graph::<Cpu, NODES>::with_capacity(mem);
        let x = g.full_like((n, Const::<FEATURES>), 0.0);
        for (j, (image, &y)) in images.chunks_exact(PIXELS).zip(ys).take(n).enumerate() {
            features(model, image, &mut scratch, &mut row)?;
            x.write_at(j * FEATURES, &row)?;
            labels[j] = usize::from(y);
        }
        let loss = cross_entropy(head.forward(x), &labels[..n], Reduction::Mean);
        loss.backward()?;
        (g.peak(), g.len())
    };
    optimizer.step(mem)?;
    Ok((used.0, used.1, n))
}

/// Held-out images the frozen features through the trained head get right
/// (the head read in place from the arena), and the head's CRC-32.
#[inline(never)]
fn evaluate(
    model: &Model<'_>,
    head: &Head,
    mem: &mut Memory<'_, Cpu>,
) -> Result<(usize, u32), FinetuneError> {
    let mut scratch = [0i8; 2 * model::WIDEST];
    let (mut right, mut crc, mut status) = (0, 0, Ok(()));
    let mut f = [0.0f32; FEATURES];
    let mut logits = [0.0f32; CLASSES];
    mem.with_buffer(|_, buf| {
        let (w, b) = head_slices(buf, head)?;
        for (image, &label) in EVAL_IMAGES.chunks_exact(PIXELS).zip(EVAL_LABELS) {
            if let Err(e) = features(model, image, &mut scratch, &mut f) {
                status = Err(e);
                break;
            }
            dense_f32(w, b, &f, &mut logits, Activation::Identity);
            right += usize::from(argmax(&logits) == usize::from(label));
        }
        for v in w.iter().chain(b.iter()) {
            crc = crc32(crc, &v.to_le_bytes());
        }
        Ok(())
    })?;
    status?;
    Ok((right, crc))
}

/// Fine-tunes the head in `arena` (at least [`ARENA_FLOATS`] floats) and
/// measures it; `clock` times the training.
pub fn run(arena: &mut [f32], clock: &dyn Fn() -> u64) -> Result<Report, FinetuneError> {
    let model = Model::load::<Net>(&INT8_MODEL.0)?;
    let eval = EVAL_LABELS.len().min(EVAL_IMAGES.len() / PIXELS);
    let before = accuracy_before(&model)?;

    // The head, started from the deployed last layer (written in place in
    // the arena: no staging copy on the stack).
    let mut mem = Memory::new(&Cpu, arena);
    let head = Head::build(&mut mem, &mut Rng::new(0))?;
    let mut init = Ok(());
    mem.with_buffer(|_, buf| {
        let (w, b) = head_slices(buf, &head)?;
        init = model.dequantize_layer(model.layer_count() - 1, w, b);
        Ok(())
    })?;
    init?;
    // Two parameters in one group: a small optimizer table on the stack.
    let mut optimizer: Optimizer<2, 1> = Optimizer::new(&mut mem, &head, RULE, LR)?;
    let mut scheduler = CosineAnnealingLR::new(PASSES, LR / 10.0);
    let persistent_floats = mem.used();

    // Training: mini-batches as they arrive, a few passes.
    let (mut graph_floats, mut graph_nodes, mut samples) = (0, 0, 0);
    let start = clock();
    for _ in 0..PASSES {
        let batches = TRAIN_IMAGES
            .chunks(BATCH * PIXELS)
            .zip(TRAIN_LABELS.chunks(BATCH));
        for (images, ys) in batches {
            let (floats, nodes, n) = step(&model, &head, &mut optimizer, &mut mem, images, ys)?;
            graph_floats = graph_floats.max(floats);
            graph_nodes = graph_nodes.max(nodes);
            samples += n;
        }
        scheduler.step();
        optimizer.set_lr_with(|base| scheduler.lr(base));
    }
    let train_ticks = clock().wrapping_sub(start);

    let (after, crc) = evaluate(&model, &head, &mut mem)?;
    Ok(Report {
        before,
        after,
        eval,
        samples,
        train_ticks,
        persistent_floats,
        graph_floats,
        graph_nodes,
        head_crc: crc,
    })
}

/// Logs a report's outcome.
pub fn summary(r: &Report) {
    let (a, b) = (r.permille(r.before), r.permille(r.after));
    say!(
        "finetune: accuracy before {}.{}% after {}.{}% on {} shifted images",
        a / 10,
        a % 10,
        b / 10,
        b % 10,
        r.eval
    );
    say!(
        "finetune: head Linear<{}, {}> of {}, trained on {} samples (batch {}, {} passes, SGD with momentum); arena {} of {} floats ({} persistent, {} for a step of {} nodes)",
        FEATURES,
        CLASSES,
        model::ARCHITECTURE,
        r.samples,
        BATCH,
        PASSES,
        r.persistent_floats + r.graph_floats,
        ARENA_FLOATS,
        r.persistent_floats,
        r.graph_floats,
        r.graph_nodes
    );
    match expected_head_crc() {
        Some(want) if want == r.head_crc => {
            say!("finetune: head CRC-32 {} equals the host's", r.head_crc)
        }
        Some(want) => say!(
            "finetune: head CRC-32 {} but the host's is {}",
            r.head_crc,
            want
        ),
        None => say!(
            "finetune: head CRC-32 {}; no host figure to compare",
            r.head_crc
        ),
    }
    say!("finetune: {}", if r.passed() { "pass" } else { "FAIL" });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host runs the same fine-tuning: it gains the points, fits its
    /// arena, and ends with the head whose CRC the firmware checks. With
    /// `EMBER_UPDATE_FINETUNE=1` it writes that CRC to
    /// `models/finetune-head.crc32` (after the data changed).
    #[test]
    fn host_finetuning_matches_the_device_figure() {
        let mut arena = vec![0.0f32; ARENA_FLOATS];
        let r = run(&mut arena, &|| 0).expect("fine-tuning runs");
        if std::env::var_os("EMBER_UPDATE_FINETUNE").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/finetune-head.crc32");
            std::fs::write(path, r.head_crc.to_le_bytes()).expect("write the CRC");
            return;
        }
        assert!(
            r.persistent_floats + r.graph_floats <= ARENA_FLOATS,
            "{r:?}"
        );
        assert_eq!(Some(r.head_crc), expected_head_crc(), "{r:?}");
        assert!(r.passed(), "{r:?}");
    }
}
