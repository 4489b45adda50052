//! The experiment: a 2-8-2 multi-layer perceptron learns XOR with full-batch
//! Adam, entirely inside one caller-provided `[f32]` arena sized at compile
//! time. No allocator, no `std`; the same code runs on the host (`cargo run
//! -p ember-firmware`) and on the microcontroller, only the `say!` macro
//! differs (`println!` or defmt). The code is a host program's: an `nn`
//! model, `Optimizer`, `loss::cross_entropy`.

use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::{
    self, Build, Footprint, Forward, Linear, Optimizer, Rule, Tanh, TrainBudget,
};
use ember_nn_core::prelude::*;

/// Seed of the initialisation.
pub const SEED: u64 = 42;
/// Hidden units.
pub const HIDDEN: usize = 8;
/// The model: `Linear` layers are initialised as PyTorch's, U(±1/√fan_in).
pub type XorNet = (Linear<2, HIDDEN>, Tanh, Linear<HIDDEN, 2>);
/// Trainable floats: `W1 [8, 2]`, `b1 [8]`, `W2 [2, 8]`, `b2 [2]`.
pub const PARAMETERS: usize = <XorNet as Footprint>::PARAMS;
/// Full-batch training steps.
pub const EPOCHS: u32 = 400;
/// The loss is logged every this many epochs (and after the last one).
pub const LOG_EVERY: u32 = 50;
/// The optimizer.
pub const RULE: Rule = Rule::adam();
/// Learning rate.
const LR: f32 = 0.05;
/// What a training step needs, from the model's type, the batch (4
/// points), the loss and the optimizer: parameters, gradients, Adam's
/// moments, and one step's graph at its peak (`nn::train_budget`).
pub const BUDGET: TrainBudget = nn::train_budget::<XorNet>(4, Loss::CrossEntropy, RULE);
/// Floats in the arena.
pub const ARENA_FLOATS: usize = BUDGET.floats;
/// Node capacity of a graph.
pub const NODES: usize = BUDGET.nodes;

/// The four XOR inputs.
const X: [[f32; 2]; 4] = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// Their classes.
const LABELS: [usize; 4] = [0, 1, 1, 0];

/// What a run measured; [`Report::passed`] is the verdict.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Loss of the first epoch (before any update).
    pub first_loss: f32,
    /// Loss of the last epoch.
    pub final_loss: f32,
    /// XOR points classified correctly after training, out of 4.
    pub correct: usize,
    /// Points that must be right for the run to pass.
    pub required: usize,
    /// Floats of the arena that persist: parameters, gradients, optimizer state.
    pub persistent_floats: usize,
    /// The most floats a training step's graph held above those (at the
    /// peak of backward).
    pub graph_floats: usize,
    /// Nodes a training step's graph recorded (of [`NODES`]).
    pub graph_nodes: usize,
}

impl Report {
    /// The loss fell to under a quarter of its first value and every point is right.
    pub fn passed(&self) -> bool {
        self.final_loss < self.first_loss / 4.0 && self.correct >= self.required
    }
}

/// Trains on XOR in `arena` and evaluates the four points. `required` is the
/// number of points that must be classified correctly for [`Report::passed`]
/// (4; more makes the run fail on purpose, to test the failure path).
// Out of line: inlined into the firmware's `main`, its frame (the
// training step's) stays on the stack under the later phases and counts in
// their stack peaks (the fine-tuning's RAM bound).
#[inline(never)]
pub fn run(arena: &mut [f32], seed: u64, required: usize) -> Result<Report> {
    let mut mem = Memory::new(&Cpu, arena);
    let mut rng = Rng::new(seed);
    let mlp = XorNet::build(&mut mem, &mut rng)?;
    let mut optimizer: Optimizer<4, 1> = Optimizer::new(&mut mem, &mlp, RULE, LR)?;
    let persistent_floats = mem.used();
    say!(
        "MLP 2-{}-2, {} parameters; arena {} floats, {} persistent",
        HIDDEN,
        PARAMETERS,
        mem.capacity(),
        persistent_floats
    );

    let (mut first_loss, mut final_loss) = (0.0f32, 0.0f32);
    let (mut graph_floats, mut graph_nodes) = (0, 0);
    for epoch in 1..=EPOCHS {
        optimizer.zero_grad(&mut mem)?;
        let loss = {
            let g = Graph::<Cpu, NODES>::with_capacity(&mut mem);
            let loss = cross_entropy(mlp.forward(g.tensor(X)), &LABELS, Reduction::Mean);
            loss.backward()?;
            (graph_floats, graph_nodes) = (graph_floats.max(g.peak()), graph_nodes.max(g.len()));
            loss.item()?
        };
        optimizer.step(&mut mem)?;
        if !loss.is_finite() {
            return Err(Error::NonFinite { what: "loss" });
        }
        if epoch == 1 {
            first_loss = loss;
        }
        final_loss = loss;
        if epoch == 1 || epoch % LOG_EVERY == 0 || epoch == EPOCHS {
            say!("epoch {}: loss {}", epoch, loss);
        }
    }

    let g = Graph::<Cpu, NODES>::with_capacity(&mut mem);
    let (probs, predicted) = g.no_grad(|| {
        let logits = mlp.forward(g.tensor(X));
        (logits.softmax::<1>(), logits.argmax_axis::<1>())
    });
    let (probs, predicted) = (probs.to_array()?, predicted.to_array()?);
    let mut correct = 0;
    for (i, (x, label)) in X.iter().zip(LABELS).enumerate() {
        let class = predicted[i] as usize;
        let ok = class == label;
        correct += usize::from(ok);
        say!(
            "xor({}, {}) = {} (p = {}), expected {}: {}",
            x[0] as u32,
            x[1] as u32,
            class,
            probs[i][class],
            label,
            if ok { "ok" } else { "WRONG" }
        );
    }
    Ok(Report {
        first_loss,
        final_loss,
        correct,
        required,
        persistent_floats,
        graph_floats,
        graph_nodes,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn learns_xor_on_the_host() {
        let mut arena = [0.0f32; super::ARENA_FLOATS];
        let r = super::run(&mut arena, super::SEED, 4).unwrap();
        assert!(r.passed(), "{r:?}");
        let r = super::run(&mut arena, super::SEED, 5).unwrap();
        assert!(!r.passed(), "5 of 4 points cannot be right");
    }
}
