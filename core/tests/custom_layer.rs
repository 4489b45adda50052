//! An operation of the user's own as a layer (`nn::Custom`): a field of a
//! derived model that trains in the memory `nn::train_budget` computes,
//! with gradients that agree with finite differences, printed by name, and
//! no deployable layer claimed.
#![cfg(feature = "derive")]

use ember_nn_core::gradcheck::{check, GradCheck};
use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::{
    self, Build, Custom, Footprint, Forward, Linear, Module, Optimizer, ReLU, Rule,
};
use ember_nn_core::prelude::*;

#[path = "support/hard_swish.rs"]
mod hard_swish;
use hard_swish::HardSwish;

#[derive(Module)]
struct Net {
    hidden: Linear<4, 8>,
    act: Custom<HardSwish>,
    out: Linear<8, 2>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<4>), B>> for Net {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<4>), B>) -> Self::Output {
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

const BATCH: usize = 16;

fn data() -> (Vec<f32>, Vec<usize>) {
    let xs: Vec<f32> = (0..BATCH * 4)
        .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let ys = (0..BATCH)
        .map(|r| usize::from(xs[r * 4] - xs[r * 4 + 2] > 0.0))
        .collect();
    (xs, ys)
}

/// The op is counted as an activation is, and a training step in an arena
/// of exactly the budget's floats and a graph of exactly its nodes
/// succeeds; the model learns.
#[test]
fn a_model_with_a_custom_layer_trains_within_its_budget() {
    type Same = (Linear<4, 8>, ReLU, Linear<8, 2>);
    assert_eq!(Net::NODES, Same::NODES);
    assert_eq!(Net::SCRATCH_PER_FEATURE, Same::SCRATCH_PER_FEATURE);
    assert_eq!(Net::PARAMS, Same::PARAMS);

    const B: nn::TrainBudget = nn::train_budget::<Net>(BATCH, Loss::CrossEntropy, Rule::adam());
    let mut buf = vec![0.0f32; B.floats];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Net::build(&mut mem, &mut Rng::new(3)).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 0.05).unwrap();
    let (xs, ys) = data();
    let mut losses = Vec::new();
    for _ in 0..100 {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::<Cpu, { B.nodes }>::with_capacity(&mut mem);
            let x = g.from_slice((BATCH, Const::<4>), &xs);
            let y = model.forward(x);
            let loss = cross_entropy(y, &ys, Reduction::Mean);
            loss.backward().unwrap();
            // Within the budget, and close to it: the op's node is counted,
            // neither left out nor counted twice.
            let used = g.peak() + 4 * model.param_count();
            assert!(
                used <= B.floats && 10 * used >= 9 * B.floats,
                "{used} of {B:?}"
            );
            losses.push(loss.item().unwrap());
        }
        opt.step(&mut mem).unwrap();
    }
    assert!(
        losses[99] < losses[0] / 4.0,
        "{} -> {}",
        losses[0],
        losses[99]
    );
}

/// The gradients through the op agree with finite differences, for every
/// parameter of the model.
#[test]
fn the_gradient_through_a_custom_layer_checks() {
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Net::build(&mut mem, &mut Rng::new(8)).unwrap();
    let mut params = Vec::new();
    model.named_parameters(&mut |p| params.push(p.param));
    assert_eq!(params.len(), 4);
    let (xs, ys) = data();
    let report = check(&mut mem, &params, &GradCheck::default(), |g| {
        let x = g.from_slice((BATCH, Const::<4>), &xs);
        cross_entropy(model.forward(x), &ys, Reduction::Mean)
    })
    .unwrap();
    assert_eq!(report.checked, Net::PARAMS);
}

/// `print(model)` names the op; the layer has no parameters and claims no
/// deployable layer; a backend without host memory is an error, not a panic
/// (checked in `ops::custom`).
#[test]
fn a_custom_layer_prints_its_name_and_describes_no_inference_layer() {
    let mut buf = vec![0.0f32; 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Net::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(
        nn::summary(&model).to_string().lines().take(5).collect::<Vec<_>>().join("\n"),
        "Net(\n  (hidden): Linear(in_features=4, out_features=8, bias=True)\n  (act): HardSwish()\n  (out): Linear(in_features=8, out_features=2, bias=True)\n)"
    );
    assert_eq!(model.act.param_count(), 0);
    // Export reads the forward pass and refuses the op by its name (the
    // issue's hard-swish model once exported silently as a ReLU network).
    let mut bytes = ember_nn_core::deploy::Aligned([0u8; 1024]);
    let err = ember_nn_core::deploy::export_f32(
        &model,
        &mut mem,
        |p| model.forward(p.input((p.rows(), Const::<4>))),
        &mut bytes.0,
        &mut [0.0f32; 64],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ember_nn_core::deploy::ExportError::Unsupported {
                op: "HardSwishBackward",
                from_output: 1,
                ..
            }
        ),
        "{err}"
    );
    let mut layers = 0;
    model.act.layers(&mut |_| layers += 1);
    assert_eq!(layers, 0);
    assert_eq!(format!("{:?}", model.act), "Custom(HardSwishBackward)");
    // The forward pass is the op's.
    let g = Graph::new(&mut mem);
    let y = model
        .act
        .forward(g.tensor([-4.0f32, -1.5, 0.0, 1.0, 3.5]).requires_grad());
    assert_eq!(y.grad_fn(), Some("HardSwishBackward"));
    assert_eq!(y.to_array().unwrap(), [0.0, -0.375, 0.0, 2.0 / 3.0, 3.5]);
}
