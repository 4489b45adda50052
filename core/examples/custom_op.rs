//! Operations of your own, with their own backward (PyTorch's
//! `torch.autograd.Function`), on the tape like built-in ones:
//!
//! - `SoftThreshold`: `sign(x) · max(|x| − λ, 0)`, the proximal step of an
//!   L1 penalty (PyTorch's `softshrink`), with the convention for its kinks
//!   (gradient 0 at `|x| = λ`);
//! - `SwishBeta`: `x · σ(β x)` with a learnable `β`, two inputs;
//! - `HardSwish`: PyTorch's `nn.Hardswish`, as a layer of a derived model
//!   (`nn::Custom<HardSwish>`, a field like `nn::ReLU`).
//!
//! The example checks the gradients against finite differences
//! (`gradcheck`), learns `β` for a small regression, and trains a model
//! with the hard swish as its activation in the memory `nn::train_budget`
//! computes for it. Its tests (`cargo test -p ember-nn-core --example
//! custom_op`) are property tests of the same gradients over random inputs.
//!
//! Run: `cargo run -p ember-nn-core --example custom_op`

use ember_nn_core::gradcheck::{check, GradCheck, GradCheckError};
use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::{self, Build, ConstOp, Custom, Forward, Linear, Module, Optimizer, Rule};
use ember_nn_core::ops::custom::CustomOp;
use ember_nn_core::prelude::*;

/// `sign(x) · max(|x| − λ, 0)`.
pub struct SoftThreshold {
    /// The threshold `λ ≥ 0`.
    pub lambda: f32,
}

impl CustomOp for SoftThreshold {
    fn name(&self) -> &'static str {
        "SoftThresholdBackward"
    }

    fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
        if self.lambda.is_nan() || self.lambda < 0.0 {
            return Err(Error::InvalidArgument {
                what: "the soft threshold must be at least 0",
            });
        }
        for (y, &x) in y.iter_mut().zip(inputs[0]) {
            *y = x.signum() * (x.abs() - self.lambda).max(0.0);
        }
        Ok(())
    }

    fn backward(
        &self,
        _index: usize,
        inputs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        grad: &mut [f32],
    ) -> Result<()> {
        for ((g, &x), &d) in grad.iter_mut().zip(inputs[0]).zip(dy) {
            // 0 at the kinks |x| = λ, as PyTorch's softshrink.
            if x.abs() > self.lambda {
                *g += d;
            }
        }
        Ok(())
    }
}

/// `x · σ(β x)`: inputs `x` and a one-element `β`.
pub struct SwishBeta;

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl CustomOp for SwishBeta {
    fn name(&self) -> &'static str {
        "SwishBetaBackward"
    }

    fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
        let [x, beta] = inputs else {
            return Err(Error::InvalidArgument {
                what: "swish-beta takes x and beta",
            });
        };
        let &[b] = *beta else {
            return Err(Error::InvalidArgument {
                what: "beta must have one element",
            });
        };
        for (y, &x) in y.iter_mut().zip(*x) {
            *y = x * sigmoid(b * x);
        }
        Ok(())
    }

    fn backward(
        &self,
        index: usize,
        inputs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        grad: &mut [f32],
    ) -> Result<()> {
        let (x, b) = (inputs[0], inputs[1][0]);
        for (i, (&x, &d)) in x.iter().zip(dy).enumerate() {
            let s = sigmoid(b * x);
            let ds = s * (1.0 - s);
            match index {
                // ∂y/∂x = σ(βx) + βx σ'(βx)
                0 => grad[i] += d * (s + b * x * ds),
                // ∂y/∂β = x² σ'(βx), summed over the elements
                _ => grad[0] += d * x * x * ds,
            }
        }
        Ok(())
    }
}

/// `x · min(max(x + 3, 0), 6) / 6` (PyTorch's `nn.Hardswish`). Its
/// gradient is PyTorch's: 0 below -3, 1 above 3, and `(2x + 3) / 6` from
/// -3 to 3, both kinks included.
pub struct HardSwish;

impl CustomOp for HardSwish {
    fn name(&self) -> &'static str {
        "HardSwishBackward"
    }

    fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
        for (y, &x) in y.iter_mut().zip(inputs[0]) {
            *y = x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
        }
        Ok(())
    }

    fn backward(
        &self,
        _index: usize,
        inputs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        grad: &mut [f32],
    ) -> Result<()> {
        for ((g, &x), &d) in grad.iter_mut().zip(inputs[0]).zip(dy) {
            let slope = if x < -3.0 {
                0.0
            } else if x > 3.0 {
                1.0
            } else {
                (2.0 * x + 3.0) / 6.0
            };
            *g += d * slope;
        }
        Ok(())
    }
}

/// A unit struct's one value: what `Custom<HardSwish>` builds itself
/// from, so that `#[derive(Module)]` can build the field. (An op with
/// settings is given to its field instead: `#[module(init =
/// Custom::new(&SoftThreshold { lambda: 0.1 }))]`, or a leaked one for
/// settings known only at run time.)
impl ConstOp for HardSwish {
    const OP: &'static Self = &HardSwish;
}

/// A classifier with the hard swish as its activation: a field like
/// `nn::ReLU`, printed as `HardSwish()`, counted by `nn::train_budget`.
#[derive(Module)]
pub struct Net {
    hidden: Linear<2, 16>,
    act: Custom<HardSwish>,
    out: Linear<16, 2>,
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<2>), B>> for Net {
    type Output = Tensor<'t, (usize, Const<2>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<2>), B>) -> Self::Output {
        self.out.forward(self.act.forward(self.hidden.forward(x)))
    }
}

/// The gradients of `Σ w · (op(x) + op(x))` with respect to `x` (and `β`),
/// against finite differences. The op is used twice on the same input so
/// that a backward that overwrote the input's gradient instead of adding to
/// it would lose one use's share and fail.
pub fn gradients_match(
    xs: &[f32],
    weights: &[f32],
    lambda: f32,
    beta: f32,
) -> core::result::Result<(), GradCheckError> {
    let n = xs.len();
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let x = mem.param_shaped((n,), xs)?;
    let b = mem.param_shaped((), &[beta])?;
    // A threshold known only at run time: the op is leaked once, since the
    // graph borrows it for `'static`.
    let soft: &'static SoftThreshold = Box::leak(Box::new(SoftThreshold { lambda }));
    let cfg = GradCheck::default();
    check(&mut mem, &[x.into()], &cfg, |g| {
        let (x, w) = (g.param(&x), g.from_slice((n,), weights));
        ((x.custom(soft) + x.custom(soft)) * w).sum()
    })?;
    check(&mut mem, &[x.into(), b.into()], &cfg, |g| {
        let (x, b, w) = (g.param(&x), g.param(&b), g.from_slice((n,), weights));
        let y = x.custom2(b, &SwishBeta, (n,)) + x.custom2(b, &SwishBeta, (n,));
        (y * w).sum()
    })?;
    // The hard swish's kinks are at ±3: the points are kept inside.
    let inside: Vec<f32> = xs.iter().map(|x| x.clamp(-2.5, 2.5)).collect();
    let x = mem.param_shaped((n,), &inside)?;
    check(&mut mem, &[x.into()], &cfg, |g| {
        let (x, w) = (g.param(&x), g.from_slice((n,), weights));
        ((x.custom(&HardSwish) + x.custom(&HardSwish)) * w).sum()
    })?;
    Ok(())
}

/// Trains `Net` to tell two noisy concentric circles apart, in an arena of exactly
/// `nn::train_budget`'s floats and a graph of exactly its nodes; the
/// first and last losses.
pub fn train_net() -> Result<(f32, f32)> {
    const BATCH: usize = 64;
    const BUDGET: nn::TrainBudget =
        nn::train_budget::<Net>(BATCH, Loss::CrossEntropy, Rule::adam());
    let mut buf = vec![0.0f32; BUDGET.floats];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(1))?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &net, Rule::adam(), 0.05)?;
    let mut rng = Rng::new(2);
    let mut xs = Vec::with_capacity(2 * BATCH);
    let mut ys = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let (class, t) = (i % 2, rng.uniform_in(0.0, 2.0 * core::f32::consts::PI));
        let r = if class == 0 { 0.5 } else { 1.0 } + rng.uniform_in(-0.1, 0.1);
        xs.extend([r * t.cos(), r * t.sin()]);
        ys.push(class);
    }
    let (mut first, mut last) = (None, 0.0);
    for _ in 0..200 {
        opt.zero_grad(&mut mem)?;
        {
            let g = Graph::<Cpu, { BUDGET.nodes }>::with_capacity(&mut mem);
            let x = g.from_slice((BATCH, Const::<2>), &xs);
            let l = cross_entropy(net.forward(x), &ys, Reduction::Mean);
            l.backward()?;
            last = l.item()?;
            first.get_or_insert(last);
        }
        opt.step(&mut mem)?;
    }
    println!("{}", nn::summary(&net));
    Ok((first.unwrap_or(last), last))
}

fn main() -> Result<()> {
    // The gradients, on a few points away from the kinks.
    let xs = [-2.0, -0.7, -0.2, 0.1, 0.45, 1.3, 2.6];
    let ws = [0.5, -1.0, 2.0, 1.5, -0.25, 1.0, 0.75];
    if let Err(e) = gradients_match(&xs, &ws, 0.3, 1.2) {
        eprintln!("gradcheck: {e}");
        return Err(Error::InvalidArgument {
            what: "a custom op's gradient",
        });
    }
    println!("gradcheck: soft-threshold, swish-beta and hard swish agree with finite differences");

    // The graph borrows an op for `'static` (it allocates nothing): a
    // constant op, as here, is one as written; `gradients_match` leaks one
    // whose threshold is known only at run time.
    let mut small = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut small[..]);
    let g: Graph<'_, Cpu> = Graph::new(&mut mem);
    let y = g
        .tensor([-1.0f32, 0.2, 2.0])
        .custom(&SoftThreshold { lambda: 0.5 });
    let y = y.to_array()?;
    println!("soft-threshold(0.5) of [-1, 0.2, 2] = {y:?}");
    if y != [-0.5, 0.0, 1.5] {
        return Err(Error::InvalidArgument {
            what: "soft-threshold forward",
        });
    }

    // Learn β: fit y = x · σ(2x) with a swish of learnable β, from β = 0.5.
    let mut buf = vec![0.0f32; 2048];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let beta = mem.param_shaped((), &[0.5])?;
    let mut opt: Optimizer = Optimizer::new(&mut mem, &beta, Rule::adam(), 0.05)?;
    let xs: Vec<f32> = (0..32).map(|i| i as f32 / 8.0 - 2.0).collect();
    let ys: Vec<f32> = xs.iter().map(|&x| x * sigmoid(2.0 * x)).collect();
    let mut loss = f32::INFINITY;
    for _ in 0..300 {
        opt.zero_grad(&mut mem)?;
        {
            let g: Graph<'_, Cpu> = Graph::new(&mut mem);
            let x = g.from_slice((32usize,), &xs);
            let y = g.from_slice((32usize,), &ys);
            let pred = x.custom2(g.param(&beta), &SwishBeta, (32usize,));
            let l = ember_nn_core::nn::loss::mse(pred, y, ember_nn_core::nn::loss::Reduction::Mean);
            l.backward()?;
            loss = l.item()?;
        }
        opt.step(&mut mem)?;
    }
    let mut learned = [0.0f32];
    mem.read(beta.value, &mut learned)?;
    let learned = learned[0];
    println!("learned beta {learned:.3} (target 2), loss {loss:.2e}");
    if (learned - 2.0).abs() > 0.05 {
        return Err(Error::InvalidArgument {
            what: "beta did not reach 2",
        });
    }

    // The hard swish as a model's activation, trained in the memory its
    // type says it needs.
    let (first, last) = train_net()?;
    println!("two circles with a hard-swish MLP: loss {first:.3} -> {last:.1e}");
    if last > first / 10.0 {
        return Err(Error::InvalidArgument {
            what: "the hard-swish model did not learn",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, proptest, ProptestConfig};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Both custom ops' gradients equal finite differences on random
        /// inputs kept away from the soft threshold's kinks.
        #[test]
        fn custom_gradients_match_finite_differences(
            xs in proptest::collection::vec(-3.0f32..3.0, 1..12),
            seed in any::<u64>(),
            lambda in 0.0f32..1.0,
            beta in -2.0f32..2.0,
        ) {
            let xs: Vec<f32> = xs
                .into_iter()
                // Moved 0.1 past the kink, on its own side (a shift by a
                // constant could land on the kink again: x = -0.097 at
                // lambda = 0.104 went to 0.103).
                .map(|x| {
                    if (x.abs() - lambda).abs() < 0.05 {
                        x.signum() * (lambda + 0.1)
                    } else {
                        x
                    }
                })
                .collect();
            let mut rng = Rng::new(seed);
            let ws: Vec<f32> = xs.iter().map(|_| rng.uniform_in(-1.0, 1.0)).collect();
            gradients_match(&xs, &ws, lambda, beta)?;
        }
    }

    /// A backward that overwrites the input's gradient (`=`) instead of
    /// adding to it is caught by the check as `gradients_match` writes it
    /// (the op used twice), with the mismatch named.
    #[test]
    fn an_overwriting_backward_is_caught() {
        struct OverwritingCube;
        impl CustomOp for OverwritingCube {
            fn name(&self) -> &'static str {
                "OverwritingCubeBackward"
            }
            fn forward(&self, inputs: &[&[f32]], y: &mut [f32]) -> Result<()> {
                y.iter_mut()
                    .zip(inputs[0])
                    .for_each(|(y, x)| *y = x * x * x);
                Ok(())
            }
            fn backward(
                &self,
                _: usize,
                inputs: &[&[f32]],
                _: &[f32],
                dy: &[f32],
                grad: &mut [f32],
            ) -> Result<()> {
                for ((g, x), d) in grad.iter_mut().zip(inputs[0]).zip(dy) {
                    *g = 3.0 * x * x * d; // wrong: `+=`
                }
                Ok(())
            }
        }
        let mut buf = vec![0.0f32; 1024];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let x = mem.param_shaped((3usize,), &[0.5, -1.0, 1.5]).unwrap();
        let cfg = GradCheck::default();
        // Used once, the bug does not show.
        check(&mut mem, &[x.into()], &cfg, |g| {
            g.param(&x).custom(&OverwritingCube).sum()
        })
        .unwrap();
        // Used twice, it does.
        let err = check(&mut mem, &[x.into()], &cfg, |g| {
            let x = g.param(&x);
            (x.custom(&OverwritingCube) + x.custom(&OverwritingCube)).sum()
        })
        .unwrap_err();
        assert!(matches!(err, GradCheckError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("finite differences"), "{err}");
    }

    /// PyTorch's convention at the kinks: gradient 0 at |x| = λ; and a bad
    /// threshold is an error, recorded on the graph, not a panic.
    #[test]
    fn kinks_and_bad_thresholds() {
        let mut buf = vec![0.0f32; 256];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let g: Graph<'_, Cpu> = Graph::new(&mut mem);
        let x = g.tensor([-0.5f32, 0.5, 0.2]).requires_grad();
        x.custom(&SoftThreshold { lambda: 0.5 })
            .sum()
            .backward()
            .unwrap();
        assert_eq!(x.grad().unwrap(), Some([0.0, 0.0, 0.0]));
        let bad = x.custom(&SoftThreshold { lambda: -1.0 });
        assert!(!bad.is_valid());
        assert!(matches!(g.status(), Err(Error::InvalidArgument { .. })));
    }
}
