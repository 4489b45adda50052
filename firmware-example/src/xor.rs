//! The experiment: a 2-8-2 multi-layer perceptron learns XOR with full-batch
//! Adam, entirely inside one caller-provided `[f32]` arena. No allocator, no
//! `std`; the same code runs on the host (`cargo run -p ember-firmware`) and
//! on the microcontroller, only the `say!` macro differs (`println!` or defmt).

use ember_core::backend::Backend;
use ember_core::ops::optim::Update;
use ember_core::prelude::*;
use ember_core::Span;

/// Seed of the initialisation.
pub const SEED: u64 = 42;
/// Hidden units.
pub const HIDDEN: usize = 8;
/// Trainable floats: `W1 [8, 2]`, `b1 [8]`, `W2 [2, 8]`, `b2 [2]`.
pub const PARAMETERS: usize = HIDDEN * 2 + HIDDEN + 2 * HIDDEN + 2;
/// Full-batch training steps.
pub const EPOCHS: u32 = 400;
/// The loss is logged every this many epochs (and after the last one).
pub const LOG_EVERY: u32 = 50;
/// Node capacity of a graph (a training step records 18).
pub const NODES: usize = 32;
/// Floats in the arena: parameters, gradients, Adam's two moments, and the
/// scratch of one forward and backward pass, with room to spare.
pub const ARENA_FLOATS: usize = 1024;

/// The four XOR inputs.
const X: [[f32; 2]; 4] = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// Their classes.
const LABELS: [usize; 4] = [0, 1, 1, 0];
/// The classes one-hot, to pick the log-probability of the right class.
const ONE_HOT: [[f32; 2]; 4] = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]];

const LR: f32 = 0.05;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;

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
    /// Floats one training graph's forward pass took above those.
    pub graph_floats: usize,
    /// Nodes one training graph recorded (of [`NODES`]).
    pub graph_nodes: usize,
}

impl Report {
    /// The loss fell to under a quarter of its first value and every point is right.
    pub fn passed(&self) -> bool {
        self.final_loss < self.first_loss / 4.0 && self.correct >= self.required
    }
}

/// A parameter with Adam's state (two moments per element) next to it.
struct Trained<S: Shape> {
    p: Param<S>,
    state: Span,
}

impl<S: ConstShape> Trained<S> {
    /// PyTorch's default `Linear` initialisation: U(-bound, bound) with
    /// `bound = 1/sqrt(fan_in)`, for weights and biases alike.
    fn uniform(mem: &mut Memory<'_, Cpu>, rng: &mut Rng, bound: f32) -> Result<Self> {
        let p = mem.param_from_fn::<S>(|_| rng.uniform_in(-bound, bound))?;
        let state = mem.alloc(2 * S::NUMEL)?;
        Ok(Trained { p, state })
    }

    /// One optimizer step, then the gradient is zeroed for the next epoch.
    fn step(&self, mem: &mut Memory<'_, Cpu>, rule: &Update) -> Result<()> {
        let Trained { p, state } = *self;
        mem.with_buffer(|be, buf| be.update(buf, rule, p.value, p.grad, state))?;
        mem.zero_grad(&p)
    }
}

impl<S: Shape> Clone for Trained<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Shape> Copy for Trained<S> {}

/// The model's parameters; `Linear` layers store their weight `[out, in]`.
struct Mlp {
    w1: Trained<Rank2<HIDDEN, 2>>,
    b1: Trained<Rank1<HIDDEN>>,
    w2: Trained<Rank2<2, HIDDEN>>,
    b2: Trained<Rank1<2>>,
}

impl Mlp {
    fn new(mem: &mut Memory<'_, Cpu>, rng: &mut Rng) -> Result<Self> {
        // 1/sqrt(2) and 1/sqrt(8), without needing a square root in a const.
        let bound1 = core::f32::consts::FRAC_1_SQRT_2;
        let bound2 = core::f32::consts::FRAC_1_SQRT_2 / 2.0;
        Ok(Mlp {
            w1: Trained::uniform(mem, rng, bound1)?,
            b1: Trained::uniform(mem, rng, bound1)?,
            w2: Trained::uniform(mem, rng, bound2)?,
            b2: Trained::uniform(mem, rng, bound2)?,
        })
    }

    /// Logits `[4, 2]`: `tanh(x·W1ᵀ + b1)·W2ᵀ + b2`.
    fn forward<'t>(
        &self,
        g: &'t dyn Tape<Cpu>,
        x: Tensor<'t, Rank2<4, 2>>,
    ) -> Tensor<'t, Rank2<4, 2>> {
        let h = (x.matmul_t(g.param(&self.w1.p)) + g.param(&self.b1.p)).tanh();
        h.matmul_t(g.param(&self.w2.p)) + g.param(&self.b2.p)
    }

    fn step(&self, mem: &mut Memory<'_, Cpu>, rule: &Update) -> Result<()> {
        self.w1.step(mem, rule)?;
        self.b1.step(mem, rule)?;
        self.w2.step(mem, rule)?;
        self.b2.step(mem, rule)
    }
}

/// Trains on XOR in `arena` and evaluates the four points. `required` is the
/// number of points that must be classified correctly for [`Report::passed`]
/// (4; more makes the run fail on purpose, to test the failure path).
pub fn run(arena: &mut [f32], seed: u64, required: usize) -> Result<Report> {
    let mut mem = Memory::new(&Cpu, arena);
    let mut rng = Rng::new(seed);
    let mlp = Mlp::new(&mut mem, &mut rng)?;
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
    let (mut beta1_t, mut beta2_t) = (1.0f32, 1.0f32);
    for epoch in 1..=EPOCHS {
        let loss = {
            let g = Graph::<Cpu, NODES>::with_capacity(&mut mem);
            let x = g.tensor(X);
            let target = g.tensor(ONE_HOT);
            let logits = mlp.forward(&g, x);
            // Cross-entropy: the mean negative log-probability of the right class.
            let loss = -(logits.log_softmax::<1>() * target).sum() / 4.0;
            let value = loss.item()?;
            (graph_floats, graph_nodes) = (g.used(), g.len());
            loss.backward()?;
            value
        };
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

        beta1_t *= BETA1;
        beta2_t *= BETA2;
        let adam = Update::Adam {
            lr: LR,
            beta1: BETA1,
            beta2: BETA2,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            bias1: 1.0 - beta1_t,
            bias2_sqrt: libm::sqrtf(1.0 - beta2_t),
        };
        mlp.step(&mut mem, &adam)?;
    }

    let g = Graph::<Cpu, NODES>::with_capacity(&mut mem);
    let (probs, predicted) = g.no_grad(|| {
        let logits = mlp.forward(&g, g.tensor(X));
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
