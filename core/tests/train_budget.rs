//! `nn::train_budget` sizes a training step's arena and graph at compile
//! time: for several models, losses and optimizers, real training steps run
//! in an arena of exactly `BUDGET.floats` floats and a graph of exactly
//! `BUDGET.nodes` nodes (so the bound suffices), and use at least 90% of the
//! floats at their peak (so the bound is tight).

use ember_nn_core::nn::loss::{self, Loss, Reduction};
use ember_nn_core::nn::{
    self, Build, Dropout, Footprint, Forward, Linear, Module, Optimizer, ReLU, Rule, Sigmoid, Tanh,
    TrainBudget, GELU,
};
use ember_nn_core::prelude::*;

/// What training steps used: the arena's floats at the peak (persistent part
/// plus the largest graph peak) and the most nodes a step recorded.
struct Used {
    floats: usize,
    nodes: usize,
}

/// Runs three training steps of `M` in an arena of exactly `budget.floats`,
/// with graphs of `NODES` nodes.
fn train_steps<M, const IN: usize, const OUT: usize, const NODES: usize>(
    budget: TrainBudget,
    batch: usize,
    kind: Loss,
    rule: Rule,
) -> Result<Used>
where
    M: Build + Module + Footprint,
    for<'t> M:
        Forward<Tensor<'t, (usize, Const<IN>), Cpu>, Output = Tensor<'t, (usize, Const<OUT>), Cpu>>,
{
    assert_eq!(NODES, budget.nodes);
    let mut arena = vec![0.0f32; budget.floats];
    let mut mem = Memory::new(&Cpu, &mut arena[..]);
    let mut rng = Rng::new(7);
    let model = M::build(&mut mem, &mut rng)?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, rule, 0.01)?;
    let labels: Vec<usize> = (0..batch).map(|i| (3 * i + 1) % OUT).collect();
    let mut used = Used {
        floats: 0,
        nodes: 0,
    };
    for step in 0..3 {
        opt.zero_grad(&mut mem)?;
        {
            let g = Graph::<Cpu, NODES>::with_capacity(&mut mem);
            let x = g.from_fn((batch, Const::<IN>), |i| {
                ((i * 37 + step * 11) % 19) as f32 / 9.5 - 1.0
            });
            let y = model.forward(x);
            let target = || {
                g.from_fn((batch, Const::<OUT>), move |i| {
                    ((i * 5 + step) % 3) as f32 / 2.0
                })
            };
            let l = match kind {
                Loss::CrossEntropy => loss::cross_entropy(y, &labels, Reduction::Mean),
                Loss::Mse => loss::mse(y, target(), Reduction::Mean),
                Loss::L1 => loss::l1(y, target(), Reduction::Mean),
                Loss::BceWithLogits => loss::bce_with_logits(y, target(), Reduction::Mean),
                Loss::Huber => loss::huber(y, target(), 0.5, Reduction::Mean),
            };
            l.backward()?;
            used.floats = used.floats.max(g.peak());
            used.nodes = used.nodes.max(g.len());
        }
        opt.step(&mut mem)?;
    }
    used.floats += mem.used();
    Ok(used)
}

macro_rules! budget_cases {
    ($($name:ident: $model:ty, $in:literal -> $out:literal, batch $batch:literal, $loss:expr, $rule:expr;)+) => {$(
        #[test]
        fn $name() {
            const BUDGET: TrainBudget = nn::train_budget::<$model>($batch, $loss, $rule);
            let used = train_steps::<$model, $in, $out, { BUDGET.nodes }>(BUDGET, $batch, $loss, $rule)
                .unwrap_or_else(|e| panic!("a step in an arena of {BUDGET:?} failed: {e}"));
            eprintln!("{}: {} of {} floats, {} of {} nodes", stringify!($name), used.floats, BUDGET.floats, used.nodes, BUDGET.nodes);
            assert!(used.floats <= BUDGET.floats);
            assert!(
                10 * used.floats >= 9 * BUDGET.floats,
                "the bound is loose: {} of {} floats used",
                used.floats,
                BUDGET.floats
            );
            assert!(used.nodes <= BUDGET.nodes);
        }
    )+};
}

type Head = Linear<64, 10>;
type Xor = (Linear<2, 8>, Tanh, Linear<8, 2>);
type Deep = (Linear<16, 32>, ReLU, Linear<32, 16>, Sigmoid, Linear<16, 4>);
type Gelu = (Linear<10, 12>, GELU, Linear<12, 3>);
type Dropped = (Linear<8, 16>, ReLU, Dropout, Linear<16, 4>);
type Normed = (Linear<8, 16>, nn::BatchNorm1d<16>, ReLU, Linear<16, 4>);

budget_cases! {
    head_cross_entropy_momentum: Head, 64 -> 10, batch 8, Loss::CrossEntropy, Rule::sgd_momentum(0.9);
    head_mse_sgd: Head, 64 -> 10, batch 8, Loss::Mse, Rule::sgd();
    xor_cross_entropy_adam: Xor, 2 -> 2, batch 4, Loss::CrossEntropy, Rule::adam();
    xor_l1_rmsprop: Xor, 2 -> 2, batch 4, Loss::L1, Rule::rmsprop();
    deep_cross_entropy_adamw: Deep, 16 -> 4, batch 16, Loss::CrossEntropy, Rule::adamw();
    deep_bce_with_logits_adagrad: Deep, 16 -> 4, batch 16, Loss::BceWithLogits, Rule::adagrad();
    deep_huber_adam: Deep, 16 -> 4, batch 16, Loss::Huber, Rule::adam();
    gelu_mse_adam_odd_batch: Gelu, 10 -> 3, batch 5, Loss::Mse, Rule::adam();
    dropout_cross_entropy_sgd: Dropped, 8 -> 4, batch 12, Loss::CrossEntropy, Rule::sgd();
    batch_norm_cross_entropy_adam: Normed, 8 -> 4, batch 12, Loss::CrossEntropy, Rule::adam();
}

/// A batch norm's scratch is its input's size twice (value and gradient)
/// whatever its rank: `BatchNorm2d` on `[N, C, H, W]` and `BatchNorm1d` on
/// `[N, C, L]` count `C·H·W` (`C·L`) floats per sample as their width,
/// which is what `scratch_per_sample` is given. The layer adds exactly
/// that to a graph's peak (here, one that sums its input).
#[test]
fn batch_norm_scratch_is_exact_on_every_rank() -> Result<()> {
    use nn::{BatchNorm1d, BatchNorm2d};
    let (batch, h, w) = (4, 5, 7);
    let width = 3 * h * w;
    let input = |i: usize| ((i * 37) % 19) as f32 / 9.5 - 1.0;
    let mut peaks = Vec::new();
    for (rank, with_bn) in [(4, true), (4, false), (3, true), (3, false)] {
        let mut arena = vec![0.0f32; 8192];
        let mut mem = Memory::new(&Cpu, &mut arena[..]);
        let bn2: BatchNorm2d<3> = BatchNorm2d::new(&mut mem)?;
        let bn1: BatchNorm1d<3> = BatchNorm1d::new(&mut mem)?;
        let g = Graph::new(&mut mem);
        if rank == 4 {
            let x = g.from_fn((batch, Const::<3>, h, w), input).requires_grad();
            let y = if with_bn { bn2.forward(x) } else { x * 1.0 };
            y.sum().backward()?;
        } else {
            let x = g.from_fn((batch, Const::<3>, h * w), input).requires_grad();
            let y = if with_bn { bn1.forward(x) } else { x * 1.0 };
            y.sum().backward()?;
        }
        peaks.push(g.peak());
    }
    // `x * 1.0` records a node of the same size as the batch norm's.
    let per_sample = nn::scratch_per_sample::<BatchNorm2d<3>>(width);
    assert_eq!(per_sample, nn::scratch_per_sample::<BatchNorm1d<3>>(width));
    assert_eq!(per_sample, 2 * width);
    assert_eq!(peaks[0], peaks[1]);
    assert_eq!(peaks[2], peaks[3]);
    // The input and its gradient, the layer's value and gradient, and the
    // sum's few floats.
    assert!(peaks[0] - batch * (2 * width + per_sample) < 4);
    Ok(())
}
