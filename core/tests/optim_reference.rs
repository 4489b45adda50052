//! Optimizer trajectories and scheduler sequences from
//! shared/reference/pytorch-behaviours.md, to 1e-5 relative.

#![allow(clippy::excessive_precision)] // reference numbers are quoted verbatim

use ember_nn_core::nn::sched::{
    Constant, CosineAnnealingLR, ExponentialLR, LrScheduler, MultiStepLR, PlateauMode,
    ReduceLROnPlateau, StepLR, Warmup,
};
use ember_nn_core::nn::{Optimizer, Rule};
use ember_nn_core::prelude::*;

fn close(a: f32, b: f32, what: &str) {
    let tol = 1e-5 * b.abs().max(1e-3);
    assert!((a - b).abs() <= tol, "{what}: got {a}, expected {b}");
}

/// Runs three steps of `rule` on loss = Σ c·(w − t)² from w0 = [1, −2, 0.5].
fn trajectory(rule: Rule, lr: f32) -> [[f32; 3]; 3] {
    let mut buf = [0.0f32; 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let w = mem.param::<Rank1<3>>(&[1.0, -2.0, 0.5]).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &w, rule, lr).unwrap();
    let mut out = [[0.0; 3]; 3];
    for row in &mut out {
        opt.zero_grad(&mut mem).unwrap();
        {
            let g = Graph::new(&mut mem);
            let t = g.tensor([0.0f32, 1.0, 2.0]);
            let c = g.tensor([1.0f32, 0.5, 2.0]);
            let loss = (c * (g.param(&w) - t).square()).sum();
            loss.backward().unwrap();
        }
        opt.step(&mut mem).unwrap();
        *row = mem.value(&w).unwrap();
    }
    out
}

fn check(rule: Rule, lr: f32, expected: [[f32; 3]; 3], name: &str) {
    let got = trajectory(rule, lr);
    for (s, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
        for i in 0..3 {
            close(g[i], e[i], &format!("{name} step {} w[{i}]", s + 1));
        }
    }
}

#[test]
fn sgd() {
    check(
        Rule::sgd(),
        0.1,
        [
            [0.8, -1.7, 1.1],
            [0.64, -1.43, 1.46],
            [0.512, -1.187, 1.676],
        ],
        "SGD",
    );
}

#[test]
fn sgd_momentum() {
    check(
        Rule::sgd_momentum(0.9),
        0.1,
        [[0.8, -1.7, 1.1], [0.46, -1.16, 2.0], [0.062, -0.458, 2.81]],
        "SGD momentum",
    );
}

#[test]
fn sgd_nesterov() {
    let rule = Rule::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: true,
        weight_decay: 0.0,
    };
    check(
        rule,
        0.1,
        [
            [0.62, -1.43, 1.64],
            [0.2224, -0.7253, 2.3996],
            [-0.108352, 0.0180369, 2.6499441],
        ],
        "SGD nesterov",
    );
}

#[test]
fn sgd_weight_decay() {
    let rule = Rule::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
        weight_decay: 0.01,
    };
    check(
        rule,
        0.1,
        [
            [0.799, -1.698, 1.0995],
            [0.457501, -1.1547019, 1.9981505],
            [0.0581942, -0.4491089, 2.8056777],
        ],
        "SGD weight decay",
    );
}

#[test]
fn adam() {
    check(
        Rule::adam(),
        0.1,
        [
            [0.9, -1.9, 0.6],
            [0.8004122, -1.8001027, 0.699761],
            [0.7015863, -1.7003815, 0.7990972],
        ],
        "Adam",
    );
}

#[test]
fn adamw() {
    check(
        Rule::adamw(),
        0.1,
        [
            [0.899, -1.898, 0.5995],
            [0.7985191, -1.7962072, 0.698663],
            [0.6989112, -1.6946963, 0.7973055],
        ],
        "AdamW",
    );
}

#[test]
fn rmsprop() {
    check(
        Rule::rmsprop(),
        0.01,
        [
            [0.9, -1.9, 0.6],
            [0.832918, -1.8303174, 0.6684149],
            [0.7799823, -1.7738885, 0.7231485],
        ],
        "RMSprop",
    );
}

#[test]
fn adagrad() {
    check(
        Rule::adagrad(),
        0.1,
        [
            [0.9, -1.9, 0.6],
            [0.8331035, -1.8304977, 0.6682318],
            [0.7804562, -1.7743593, 0.7226755],
        ],
        "Adagrad",
    );
}

fn sequence<S: LrScheduler>(mut s: S, metrics: Option<&[f32]>) -> Vec<f32> {
    (0..8)
        .map(|i| {
            match metrics {
                Some(m) => s.step_with(m[i]),
                None => s.step(),
            }
            s.lr(0.1)
        })
        .collect()
}

fn check_seq(got: Vec<f32>, expected: [f32; 8], name: &str) {
    for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
        let tol = 1e-5 * e.abs() + 1e-9;
        assert!(
            (g - e).abs() <= tol,
            "{name} epoch {}: got {g}, expected {e}",
            i + 1
        );
    }
}

#[test]
fn step_lr() {
    check_seq(
        sequence(StepLR::new(2, 0.5), None),
        [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625],
        "StepLR",
    );
}

#[test]
fn exponential_lr() {
    check_seq(
        sequence(ExponentialLR::new(0.9), None),
        [
            0.09, 0.081, 0.0729, 0.06561, 0.059049, 0.0531441, 0.04782969, 0.04304672,
        ],
        "ExponentialLR",
    );
}

#[test]
fn cosine_annealing_lr() {
    check_seq(
        sequence(CosineAnnealingLR::new(4, 0.0), None),
        [
            0.08535534, 0.05, 0.01464466, 0.0, 0.01464466, 0.05, 0.08535534, 0.1,
        ],
        "CosineAnnealingLR",
    );
}

#[test]
fn reduce_on_plateau() {
    let losses = [1.0, 0.95, 0.94, 0.9, 0.5, 0.49, 0.48, 0.47];
    check_seq(
        sequence(
            ReduceLROnPlateau::new(PlateauMode::Min, 0.1, 1, 0.1),
            Some(&losses),
        ),
        [0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001],
        "ReduceLROnPlateau",
    );
}

#[test]
fn multistep_and_warmup() {
    check_seq(
        sequence(MultiStepLR::new(&[2, 5], 0.1), None),
        [0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001],
        "MultiStepLR",
    );
    // Linear warmup over 4 epochs from 0.25·base, then constant.
    let mut w = Warmup::new(0.25, 4, Constant);
    let mut lrs = vec![w.lr(0.1)];
    for _ in 0..5 {
        w.step();
        lrs.push(w.lr(0.1));
    }
    let expected = [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1];
    for (g, e) in lrs.iter().zip(expected) {
        assert!((g - e).abs() < 1e-7, "{lrs:?}");
    }
}

#[test]
fn scheduler_drives_optimizer_groups() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let a = mem.param::<Rank1<2>>(&[1.0, 1.0]).unwrap();
    let b = mem.param::<Rank1<2>>(&[1.0, 1.0]).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &a, Rule::sgd_momentum(0.9), 1e-2).unwrap();
    assert_eq!(opt.add_group(&mut mem, &b, 1e-3).unwrap(), 1);
    let mut s = StepLR::new(1, 0.1);
    s.step();
    opt.set_lr_with(|base| s.lr(base));
    let lrs: Vec<f32> = opt.groups().iter().map(|g| g.lr).collect();
    assert!(
        (lrs[0] - 1e-3).abs() < 1e-9 && (lrs[1] - 1e-4).abs() < 1e-10,
        "{lrs:?}"
    );
    // A parameter cannot be in two groups.
    assert!(opt.add_group(&mut mem, &a, 0.5).is_err());
}

/// PyTorch's Adam with `amsgrad=True`, written out in f64 from its
/// documentation: `v̂max = max(v̂max, v)`, `p -= lr/(1−β1ᵗ) · m / (√v̂max/√(1−β2ᵗ) + eps)`.
fn amsgrad_reference(grads: &[f64], lr: f64, p0: f64, b2: f64) -> Vec<f64> {
    let (b1, eps) = (0.9f64, 1e-8f64);
    let (mut p, mut m, mut v, mut vmax) = (p0, 0.0, 0.0, 0.0f64);
    let mut out = Vec::new();
    for (t, &c) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        let g = c; // loss = c·p
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        vmax = vmax.max(v);
        let denom = vmax.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
        p -= lr / (1.0 - b1.powi(t)) * m / denom;
        out.push(p);
    }
    out
}

/// AMSGrad keeps the largest second moment: after a large gradient then
/// small ones (β2 = 0.5, so that the moment falls) its steps are smaller
/// than plain Adam's, and equal to the reference formula.
#[test]
fn adam_amsgrad() {
    let grads = [1.0f32, 0.05, 0.05, 0.05];
    let run = |rule: Rule| {
        let mut buf = [0.0f32; 64];
        let mut mem = Memory::new(&Cpu, &mut buf[..]);
        let w = mem.param::<Rank1<1>>(&[1.0]).unwrap();
        let mut opt: Optimizer = Optimizer::new(&mut mem, &w, rule, 0.1).unwrap();
        let mut out = Vec::new();
        for &c in &grads {
            opt.zero_grad(&mut mem).unwrap();
            {
                let g = Graph::new(&mut mem);
                (g.param(&w) * c).sum().backward().unwrap();
            }
            opt.step(&mut mem).unwrap();
            out.push(mem.value(&w).unwrap()[0]);
        }
        (out, opt.state_len())
    };
    let adam = Rule::Adam {
        beta1: 0.9,
        beta2: 0.5,
        eps: 1e-8,
        weight_decay: 0.0,
        amsgrad: false,
    };
    let (ams, len) = run(adam.with_amsgrad(true));
    let (plain, plain_len) = run(adam);
    assert_eq!(
        (len, plain_len),
        (3, 2),
        "AMSGrad keeps a third state plane"
    );
    let g64: Vec<f64> = grads.iter().map(|&g| f64::from(g)).collect();
    for (s, (&a, e)) in ams
        .iter()
        .zip(amsgrad_reference(&g64, 0.1, 1.0, 0.5))
        .enumerate()
    {
        close(a, e as f32, &format!("AMSGrad step {}", s + 1));
    }
    // From step 2 on AMSGrad divides by the step-1 moment: smaller steps.
    assert!(1.0 - ams[3] < 1.0 - plain[3], "{ams:?} vs {plain:?}");
    // AdamW with AMSGrad too.
    assert_eq!(Rule::adamw().with_amsgrad(true).state_planes(), 3);
}

/// Parameter groups carry their own hyper-parameters (PyTorch's
/// `[{'params': decay, 'weight_decay': 0.01}, {'params': no_decay,
/// 'weight_decay': 0.0}]`): with a zero gradient, AdamW's decoupled decay
/// shrinks the weights of group 0 and leaves the biases of group 1 alone.
#[test]
fn groups_carry_their_own_hyper_parameters() {
    use ember_nn_core::nn::{Build, Linear, ParamInfo, ParamKind};
    let mut buf = [0.0f32; 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Linear::<3, 2>::build(&mut mem, &mut Rng::new(1)).unwrap();
    let w0 = mem.value(&model.weight).unwrap();
    let b0 = mem.value(&model.bias).unwrap();
    let is_bias = |p: &ParamInfo<'_>| p.kind == ParamKind::Bias;
    let rule = Rule::adamw().with_weight_decay(0.5);
    let mut opt: Optimizer =
        Optimizer::new_where(&mut mem, &model, rule, 0.1, |p| !is_bias(p)).unwrap();
    let g1 = opt
        .add_group_where(&mut mem, &model, 0.1, rule.with_weight_decay(0.0), is_bias)
        .unwrap();
    assert_eq!(g1, 1);
    assert_eq!(opt.groups()[0].rule.weight_decay(), 0.5);
    opt.zero_grad(&mut mem).unwrap();
    opt.step(&mut mem).unwrap();
    let w1 = mem.value(&model.weight).unwrap();
    let b1 = mem.value(&model.bias).unwrap();
    for (r0, r1) in w0.iter().zip(w1.iter()) {
        for (a, b) in r0.iter().zip(r1) {
            close(*b, a * (1.0 - 0.1 * 0.5), "decayed weight");
        }
    }
    assert_eq!(b0, b1, "no decay on the biases");
    // A group must use the optimizer's algorithm; a failed add leaves no group.
    let other = mem.param::<Rank1<2>>(&[0.0, 0.0]).unwrap();
    assert!(opt
        .add_group_where(&mut mem, &other, 0.1, Rule::sgd(), |_| true)
        .is_err());
    assert_eq!(opt.groups().len(), 2);
}
