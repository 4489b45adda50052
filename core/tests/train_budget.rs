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
}

/// The bound's parts, written out for one model: a change to any of them
/// (a layer's scratch, the loss's, the optimizer's state) shows here.
#[test]
fn head_budget_parts() {
    let b = nn::train_budget::<Head>(8, Loss::CrossEntropy, Rule::sgd_momentum(0.9));
    let params = 64 * 10 + 10;
    // Parameters, gradients, momentum; the input batch; the affine map's
    // value and gradient; the loss's targets, row losses, their gradient,
    // and its 5 scalars.
    assert_eq!(b.floats, 3 * params + 8 * 64 + 8 * 2 * 10 + 8 * 3 + 5);
    // Input, weight, bias, affine map (4 with a vector input), and the loss's 4.
    assert_eq!(b.nodes, 1 + 4 + 4);
}

/// An input batch written in place, sample by sample, trains exactly as a
/// copied one; writes that could be seen by recorded nodes, or that touch a
/// gradient-carrying leaf, are refused and change nothing.
#[test]
fn input_written_in_place() -> Result<()> {
    let rows = [[0.5f32, -1.0, 2.0], [1.5, 0.25, -0.75]];
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g: Graph<'_, Cpu> = Graph::new(&mut mem);
    let copied = g.tensor(rows);
    let written = g.full_like((2usize, Const::<3>), 0.0);
    for (i, r) in rows.iter().enumerate() {
        written.write_at(3 * i, r)?;
    }
    let (mut a, mut b) = ([0.0f32; 6], [0.0f32; 6]);
    written.read(&mut a)?;
    copied.read(&mut b)?;
    assert_eq!(a, b);
    // Past the end, by length or by offset overflow.
    assert_eq!(
        written.write_at(4, &[0.0; 3]),
        Err(Error::Length {
            expected: 2,
            found: 3
        })
    );
    assert!(written.write_at(usize::MAX, &[0.0]).is_err());
    // A leaf something has read, a leaf with a gradient, an operation.
    let y = written * 2.0;
    assert!(matches!(
        written.write_at(0, &[9.0]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        y.write_at(0, &[9.0]),
        Err(Error::InvalidArgument { .. })
    ));
    let p = g.full_like((2usize,), 0.0).requires_grad();
    assert!(matches!(
        p.write_at(0, &[9.0]),
        Err(Error::InvalidArgument { .. })
    ));
    y.read(&mut a)?;
    assert_eq!(a, [1.0, -2.0, 4.0, 3.0, 0.5, -1.5]);
    assert_eq!(g.status(), Ok(()));
    Ok(())
}
