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
//! (`Deployed::head_parameters`), each step is `Optimizer::zero_grad`, a
//! `Graph`, `forward`, `loss::cross_entropy`, `backward`, `Optimizer::step`,
//! and the learning rate follows an `nn::sched` scheduler. The frozen part is
//! an ordinary int8 forward through the deployed model
//! (`Deployed::head_features`), dequantized to f32 features. The model is
//! the committed MLP (`Model`) or a CNN's int8 graph (`GraphModel`, whose
//! head is its last node, a dense layer). No allocator; on the
//! host the same code runs as part of an ordinary program, and gives the
//! same head, bit for bit (`EXPECTED_HEAD_CRC`, checked by the firmware and
//! by the host test).

use crate::inference::{model, Deployed, Loaded, INT8_MODEL, PIXELS, SCRATCH_I8};
use ember_nn_core::deploy::{
    argmax, argmax_i8, crc32, dense_f32, int8_layer_len, Activation, FormatError, QuantParams,
};
use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::sched::{CosineAnnealingLR, LrScheduler};
use ember_nn_core::nn::{self, Build, Forward, Linear, Optimizer, Rule, TrainBudget};
use ember_nn_core::prelude::*;

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
/// RAM the fine-tuning may take on the device (arena and stack), bytes:
/// 16 KB for the committed MLP's `Linear<64, 10>` head; for a CNN's head
/// (`Linear<1568, 10>` for the preset), its arena and the stack's two
/// large buffers (the int8 inference's scratch, one sample's f32
/// features) plus 8 KB of stack.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[cfg(not(model_graph))]
pub const RAM_TARGET_BYTES: usize = 16 * 1024;
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[cfg(model_graph)]
pub const RAM_TARGET_BYTES: usize = 4 * ARENA_FLOATS + SCRATCH_I8 + 4 * FEATURES + 8 * 1024;
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
/// CRC-32 of the whole adapted model file the host writes with this same code.
static EXPECTED_MODEL_CRC: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/finetune-model.crc32"));
/// Bytes of the head's int8 data in the adapted model file.
const HEAD_BYTES: usize = int8_layer_len(FEATURES, CLASSES);

/// Why fine-tuning could not run.
#[derive(Clone, Copy, Debug)]
pub enum FinetuneError {
    /// The model file was rejected.
    Model(ember_nn_core::deploy::FormatError),
    /// Inference failed.
    Infer(ember_nn_core::deploy::InferError),
    /// The training graph or the arena failed.
    Train(Error),
    /// The adapted model could not be written back.
    Write(FormatError),
}

impl core::fmt::Display for FinetuneError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FinetuneError::Model(e) => write!(f, "the int8 model was rejected: {e}"),
            FinetuneError::Infer(e) => write!(f, "inference failed: {e}"),
            FinetuneError::Train(e) => write!(f, "training failed: {e}"),
            FinetuneError::Write(e) => write!(f, "writing the adapted model failed: {e}"),
        }
    }
}

/// The device logs it with defmt, which formats on the host: the message
/// through `core::fmt` (the `Display` above) linked 5 KB of formatting code
/// and error messages into the firmware.
#[cfg(target_os = "none")]
impl defmt::Format for FinetuneError {
    fn format(&self, f: defmt::Formatter) {
        match self {
            FinetuneError::Model(e) => defmt::write!(f, "the int8 model was rejected: {}", e),
            FinetuneError::Infer(e) => defmt::write!(f, "inference failed: {}", e),
            FinetuneError::Train(e) => defmt::write!(f, "training failed: {}", e),
            FinetuneError::Write(e) => {
                defmt::write!(f, "writing the adapted model failed: {}", e)
            }
        }
    }
}

impl From<ember_nn_core::deploy::FormatError> for FinetuneError {
    fn from(e: ember_nn_core::deploy::FormatError) -> Self {
        FinetuneError::Model(e)
    }
}
impl From<ember_nn_core::deploy::InferError> for FinetuneError {
    fn from(e: ember_nn_core::deploy::InferError) -> Self {
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
    /// The range of the head's outputs over the last pass's samples: its
    /// int8 output quantization in the adapted model.
    pub logit_range: (f32, f32),
    /// Bytes of the adapted model file written back.
    pub model_bytes: usize,
    /// CRC-32 of that file's contents: the CRC it stores at its end. (The
    /// CRC of the whole file, stored CRC included, is the same constant
    /// for every valid file, 558161692, CRC-32's residue: it compared
    /// nothing.)
    pub model_crc: u32,
}

impl Report {
    /// Accuracy in per mille.
    pub fn permille(&self, right: usize) -> usize {
        (1000 * right + self.eval / 2) / self.eval.max(1)
    }

    /// The held-out accuracy gained at least [`REQUIRED_GAIN_POINTS`], and
    /// the head and the adapted model file are the host's, bit for bit.
    pub fn passed(&self) -> bool {
        self.eval > 0
            && self.permille(self.after) >= self.permille(self.before) + 10 * REQUIRED_GAIN_POINTS
            && Some(self.head_crc) == expected_head_crc()
            && Some(self.model_crc) == expected_model_crc()
    }
}

/// A CRC from a 4-byte little-endian file, if it holds one.
fn crc_of(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The head CRC the host computed, if the file holds one.
pub fn expected_head_crc() -> Option<u32> {
    crc_of(EXPECTED_HEAD_CRC)
}

/// The adapted model file's CRC the host computed, if the file holds one.
pub fn expected_model_crc() -> Option<u32> {
    crc_of(EXPECTED_MODEL_CRC)
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
    model: &Loaded,
    image: &[u8],
    scratch: &mut [i8],
    out: &mut [f32],
) -> Result<(), FinetuneError> {
    model.head_features(image, scratch, out)?;
    Ok(())
}

/// Held-out images the deployed model (all of it, int8) gets right.
#[inline(never)]
fn accuracy_before(model: &Loaded) -> Result<usize, FinetuneError> {
    let mut scratch = [0i8; SCRATCH_I8];
    let mut right = 0;
    for (image, &label) in EVAL_IMAGES.chunks_exact(PIXELS).zip(EVAL_LABELS) {
        let logits = model.logits_i8(image, &mut scratch)?;
        right += usize::from(argmax_i8(logits) == usize::from(label));
    }
    Ok(right)
}

/// One training step on a mini-batch as it arrives: the frozen features of
/// each image written straight into the graph's input (no staging copy of
/// the batch), then zero_grad, forward, loss, backward, step. Returns the
/// graph's peak floats and nodes and the batch's samples; with `range`, widens
/// it to the head's outputs (the calibration of its int8 output). (Out of
/// line, like the evaluations, so that the stack holds one phase's buffers
/// at a time.)
#[inline(never)]
fn step(
    model: &Loaded,
    head: &Head,
    optimizer: &mut Optimizer<2, 1>,
    mem: &mut Memory<'_, Cpu>,
    batch: (&[u8], &[u8]),
    range: Option<&mut (f32, f32)>,
) -> Result<(usize, usize, usize), FinetuneError> {
    let (images, ys) = batch;
    let mut scratch = [0i8; SCRATCH_I8];
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
        let logits = head.forward(x);
        if let Some(r) = range {
            let mut out = [0.0f32; BATCH * CLASSES];
            logits.read(&mut out[..n * CLASSES])?;
            for &v in &out[..n * CLASSES] {
                *r = (r.0.min(v), r.1.max(v));
            }
        }
        let loss = cross_entropy(logits, &labels[..n], Reduction::Mean);
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
    model: &Loaded,
    head: &Head,
    mem: &mut Memory<'_, Cpu>,
) -> Result<(usize, u32), FinetuneError> {
    let mut scratch = [0i8; SCRATCH_I8];
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

/// Writes the adapted model, the deployed int8 file with the trained head
/// quantized in place of its last layer, to `emit`; returns its length and
/// the CRC-32 of its contents (the CRC the writer emits last, computed here
/// again from the pieces before it). The frozen layers' bytes go from flash
/// to `emit` as they are.
#[inline(never)]
fn write_back(
    model: &Loaded,
    head: &Head,
    mem: &mut Memory<'_, Cpu>,
    qout: QuantParams,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
) -> Result<(usize, u32), FinetuneError> {
    let mut scratch = [0u8; HEAD_BYTES];
    // The CRC of every piece but the last, which is the stored CRC.
    let (mut crc, mut before_last) = (0, 0);
    let mut written = Ok(0);
    mem.with_buffer(|_, buf| {
        let (w, b) = head_slices(buf, head)?;
        written = model.write_with_head(w, b, qout, &mut scratch, &mut |bytes| {
            before_last = crc;
            crc = crc32(crc, bytes);
            emit(bytes)
        });
        Ok(())
    })?;
    Ok((written.map_err(FinetuneError::Write)?, before_last))
}

/// Fine-tunes the head in `arena` (at least [`ARENA_FLOATS`] floats) and
/// measures it; `clock` times the training. The adapted model goes to
/// `emit` in pieces, as a `.emb` file (the deployed int8 model with the
/// trained head quantized in place of its last layer).
pub fn run(
    arena: &mut [f32],
    clock: &dyn Fn() -> u64,
    emit: &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
) -> Result<Report, FinetuneError> {
    let model = Loaded::open(&INT8_MODEL.0)?;
    let eval = EVAL_LABELS.len().min(EVAL_IMAGES.len() / PIXELS);
    let before = accuracy_before(&model)?;

    // The head, started from the deployed last layer (written in place in
    // the arena: no staging copy on the stack).
    let mut mem = Memory::new(&Cpu, arena);
    let head = Head::build(&mut mem, &mut Rng::new(0))?;
    let mut init = Ok(());
    mem.with_buffer(|_, buf| {
        let (w, b) = head_slices(buf, &head)?;
        init = model.head_parameters(w, b);
        Ok(())
    })?;
    init?;
    // Two parameters in one group: a small optimizer table on the stack.
    let mut optimizer: Optimizer<2, 1> = Optimizer::new(&mut mem, &head, RULE, LR)?;
    let mut scheduler = CosineAnnealingLR::new(PASSES, LR / 10.0);
    let persistent_floats = mem.used();

    // Training: mini-batches as they arrive, a few passes.
    let (mut graph_floats, mut graph_nodes, mut samples) = (0, 0, 0);
    let mut logit_range = (f32::INFINITY, f32::NEG_INFINITY);
    let start = clock();
    for pass in 0..PASSES {
        let batches = TRAIN_IMAGES
            .chunks(BATCH * PIXELS)
            .zip(TRAIN_LABELS.chunks(BATCH));
        for batch in batches {
            // The last pass also calibrates the head's int8 output.
            let range = (pass + 1 == PASSES).then_some(&mut logit_range);
            let (floats, nodes, n) = step(&model, &head, &mut optimizer, &mut mem, batch, range)?;
            graph_floats = graph_floats.max(floats);
            graph_nodes = graph_nodes.max(nodes);
            samples += n;
        }
        scheduler.step();
        optimizer.set_lr_with(|base| scheduler.lr(base));
    }
    let train_ticks = clock().wrapping_sub(start);

    let (after, crc) = evaluate(&model, &head, &mut mem)?;
    let qout = QuantParams::from_range(logit_range.0, logit_range.1);
    let (model_bytes, model_crc) = write_back(&model, &head, &mut mem, qout, emit)?;
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
        logit_range,
        model_bytes,
        model_crc,
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
    say!(
        "finetune: adapted int8 model written back: {} bytes, CRC-32 {} ({} the host's); head output range [{}, {}]",
        r.model_bytes,
        r.model_crc,
        if Some(r.model_crc) == expected_model_crc() {
            "equals"
        } else {
            "DIFFERS from"
        },
        r.logit_range.0,
        r.logit_range.1
    );
    say!("finetune: {}", if r.passed() { "pass" } else { "FAIL" });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adapted model file's int8 accuracy on the held-out shifted images.
    fn int8_accuracy(file: &[u8]) -> usize {
        // 4-byte aligned, as the format is read in place.
        let mut words = vec![0u32; file.len().div_ceil(4)];
        for (w, c) in words.iter_mut().zip(file.chunks(4)) {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            *w = u32::from_le_bytes(b);
        }
        // SAFETY: u8 has no alignment or validity requirements; the slice
        // covers the words' bytes and borrows them shared.
        let bytes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), file.len()) };
        let model = Loaded::open(bytes).expect("the adapted model parses as the same model");
        let mut scratch = vec![0i8; SCRATCH_I8];
        EVAL_IMAGES
            .chunks_exact(PIXELS)
            .zip(EVAL_LABELS)
            .filter(|(image, &label)| {
                let logits = model.logits_i8(image, &mut scratch).expect("inference");
                argmax_i8(logits) == usize::from(label)
            })
            .count()
    }

    /// The host runs the same fine-tuning: it gains the points, fits its
    /// arena, and ends with the head and the adapted model file whose CRCs
    /// the firmware checks; that file is a valid int8 model of the same type
    /// whose int8 accuracy gains the points too. With
    /// `EMBER_UPDATE_FINETUNE=1` it writes both CRCs to `models/` (after the
    /// data changed).
    #[test]
    fn host_finetuning_matches_the_device_figure() {
        let mut arena = vec![0.0f32; ARENA_FLOATS];
        let mut file = Vec::new();
        let r = run(&mut arena, &|| 0, &mut |bytes| {
            file.extend_from_slice(bytes);
            Ok(())
        })
        .expect("fine-tuning runs");
        assert_eq!(r.model_bytes, file.len());
        let (contents, stored) = file.split_at(file.len() - 4);
        assert_eq!(r.model_crc, crc32(0, contents));
        assert_eq!(r.model_crc.to_le_bytes(), stored);
        if std::env::var_os("EMBER_UPDATE_FINETUNE").is_some() {
            let dir = env!("EMBER_FIRMWARE_MODELS_DIR");
            std::fs::write(
                format!("{dir}/finetune-head.crc32"),
                r.head_crc.to_le_bytes(),
            )
            .expect("write the head CRC");
            std::fs::write(
                format!("{dir}/finetune-model.crc32"),
                r.model_crc.to_le_bytes(),
            )
            .expect("write the model CRC");
            return;
        }
        assert!(
            r.persistent_floats + r.graph_floats <= ARENA_FLOATS,
            "{r:?}"
        );
        assert_eq!(Some(r.head_crc), expected_head_crc(), "{r:?}");
        assert_eq!(Some(r.model_crc), expected_model_crc(), "{r:?}");
        assert!(r.passed(), "{r:?}");
        // The written model, run in int8 as deployed, keeps the gain.
        let right = int8_accuracy(&file);
        let (before, after) = (r.permille(r.before), r.permille(right));
        assert!(
            after >= before + 10 * REQUIRED_GAIN_POINTS,
            "int8 accuracy of the adapted model {after} per mille, before {before}"
        );
    }

    /// A destination that refuses the model is a typed error.
    #[test]
    fn a_refused_write_back_is_an_error() {
        let mut arena = vec![0.0f32; ARENA_FLOATS];
        let r = run(&mut arena, &|| 0, &mut |_| Err(FormatError::Output));
        assert!(
            matches!(r, Err(FinetuneError::Write(FormatError::Output))),
            "{r:?}"
        );
    }
}
