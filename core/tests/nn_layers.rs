//! Layers, losses, names, summaries, initialisers, gradient clipping and
//! state round trips.

#![allow(clippy::excessive_precision)] // reference numbers are quoted verbatim

use ember_nn_core::gradcheck::{check, GradCheck};
use ember_nn_core::nn::init::{self, FanMode, Init};
use ember_nn_core::nn::loss::{self, Reduction};
use ember_nn_core::nn::optim::clip_grad_norm;
use ember_nn_core::nn::Footprint;
use ember_nn_core::nn::{
    summary, Build, Dropout, Flatten, Forward, GELUTanh, LeakyReLU, Linear, Module, Optimizer,
    ParamKind, ReLU, Rule, SiLU, Sigmoid, Softplus, Softsign, Tanh, ELU, GELU, SELU,
};
use ember_nn_core::prelude::*;

fn close(a: f32, b: f32, tol: f32, what: &str) {
    assert!(
        (a - b).abs() <= tol * b.abs().max(1.0),
        "{what}: got {a}, expected {b}"
    );
}

#[test]
fn linear_and_activation_layers_pass_the_gradient_checker() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(3);
    let model = <(
        Linear<3, 5>,
        Tanh,
        Linear<5, 5>,
        Sigmoid,
        Linear<5, 5>,
        SiLU,
        Linear<5, 5>,
        GELU,
        Linear<5, 5>,
        GELUTanh,
        Linear<5, 4>,
        Softsign,
    )>::build(&mut mem, &mut rng)
    .unwrap();
    let x = mem
        .param_from_fn::<Rank2<2, 3>>(|i| (i as f32 * 0.37).sin())
        .unwrap();
    let mut params = vec![x.into()];
    model.named_parameters(&mut |p| params.push(p.param));
    let w = [0.3f32, -0.7, 1.1, 0.5, -0.2, 0.9, -1.3, 0.4];
    let report = check(&mut mem, &params, &GradCheck::default(), |g| {
        let y = model.forward(g.param(&x));
        (y * g.from_slice(y.shape(), &w)).sum()
    })
    .unwrap();
    assert!(report.checked > 100);
}

#[test]
fn piecewise_activations_and_vector_linear_pass_the_gradient_checker() {
    let mut buf = vec![0.0f32; 2048];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(5);
    let lin = Linear::<4, 6>::build(&mut mem, &mut rng).unwrap();
    // Inputs well away from 0, the kink of each of these.
    let x = mem.param::<Rank1<4>>(&[0.8, -0.6, 1.4, -1.9]).unwrap();
    let params = [x.into(), lin.weight.into(), lin.bias.into()];
    let cfg = GradCheck {
        step: 1e-3,
        ..GradCheck::default()
    };
    for act in 0..5 {
        check(&mut mem, &params, &cfg, |g| {
            let h = g.param(&x).mul_scalar(1.5);
            let h = match act {
                0 => ReLU.forward(h),
                1 => LeakyReLU::default().forward(h),
                2 => ELU::default().forward(h),
                3 => SELU.forward(h),
                _ => Softplus.forward(h),
            };
            lin.forward(h).square().sum()
        })
        .unwrap_or_else(|e| panic!("activation {act}: {e}"));
    }
}

#[test]
fn losses_pass_the_gradient_checker() {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let logits = mem
        .param::<Rank2<3, 4>>(&[
            [0.2, -1.0, 0.5, 1.5],
            [1.0, 0.1, -0.3, 0.0],
            [-0.5, 0.7, 0.9, -1.2],
        ])
        .unwrap();
    let target = mem
        .param::<Rank2<3, 4>>(&[
            [0.1, 0.9, 0.4, 0.0],
            [1.0, 0.3, 0.2, 0.6],
            [0.5, 0.0, 1.0, 0.7],
        ])
        .unwrap();
    let labels = [3usize, 0, 2];
    let params = [logits.into(), target.into()];
    let cfg = GradCheck::default();
    for (name, which) in [
        ("mse", 0),
        ("l1", 1),
        ("ce", 2),
        ("nll", 3),
        ("bce", 4),
        ("bce_logits", 5),
        ("huber", 6),
    ] {
        for r in [Reduction::Mean, Reduction::Sum] {
            check(&mut mem, &params, &cfg, |g| {
                let (z, t) = (g.param(&logits), g.param(&target));
                match which {
                    0 => loss::mse(z, t, r),
                    1 => loss::l1(z, t, r),
                    2 => loss::cross_entropy(z, &labels, r),
                    3 => loss::nll(z.log_softmax::<1>(), &labels, r),
                    4 => loss::bce(z.sigmoid(), t, r),
                    5 => loss::bce_with_logits(z, t, r),
                    // δ = 0.3: some of these differences are beyond it, some within.
                    _ => loss::huber(z, t, 0.3, r),
                }
            })
            .unwrap_or_else(|e| panic!("{name} {r:?}: {e}"));
        }
    }
}

#[test]
fn penalties_pass_the_gradient_checker() {
    let mut buf = vec![0.0f32; 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = <(Linear<3, 2>, ReLU, Linear<2, 2>)>::build(&mut mem, &mut Rng::new(9)).unwrap();
    let mut params = vec![];
    model.named_parameters(&mut |p| params.push(p.param));
    check(&mut mem, &params, &GradCheck::default(), |g| {
        loss::l2_penalty(g, &model).mul_scalar(0.5) + loss::l1_penalty(g, &model).mul_scalar(0.1)
    })
    .unwrap();
}

#[test]
fn loss_reference_numbers() {
    let mut buf = [0.0f32; 512];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let ce = loss::cross_entropy(g.tensor([[1.0f32, 2.0, 3.0]]), &[1], Reduction::Mean);
    close(ce.item().unwrap(), 1.4076059, 1e-5, "cross entropy");
    let l = g.tensor([[1.0f32, 2.0, 3.0], [1.0, 1.0, -1.0]]);
    close(
        loss::cross_entropy(l, &[2, 0], Reduction::Mean)
            .item()
            .unwrap(),
        0.5831148,
        1e-5,
        "ce mean",
    );
    close(
        loss::nll(l.log_softmax::<1>(), &[2, 0], Reduction::Mean)
            .item()
            .unwrap(),
        0.5831148,
        1e-5,
        "nll",
    );
    let pred = g.tensor([[0.5f32, -1.0], [2.0, 0.0]]);
    let target = g.tensor([[1.0f32, 0.0], [1.5, -0.5]]);
    close(
        loss::mse(pred, target, Reduction::Mean).item().unwrap(),
        0.4375,
        1e-6,
        "mse",
    );
    close(
        loss::l1(pred, target, Reduction::Mean).item().unwrap(),
        0.625,
        1e-6,
        "l1",
    );
    // PyTorch's HuberLoss, by hand (PyTorch's own values and gradients:
    // tests/tests/reference.rs, regression_losses_match_pytorch). d = -0.5, -1, 0.5,
    // 0.5; with delta 1 all within: 0.5 (0.25 + 1 + 0.25 + 0.25) / 4 =
    // 0.21875; with delta 0.75, |d| = 1 is beyond: 0.75 (1 - 0.375) =
    // 0.46875, the others 0.125 each: 0.84375 / 4 = 0.2109375.
    close(
        loss::huber(pred, target, 1.0, Reduction::Mean)
            .item()
            .unwrap(),
        0.21875,
        1e-6,
        "huber",
    );
    close(
        loss::huber(pred, target, 0.75, Reduction::Mean)
            .item()
            .unwrap(),
        0.2109375,
        1e-6,
        "huber delta 0.75",
    );
    // Far from the target it is linear: delta (|d| - delta / 2) = 2.5.
    close(
        loss::huber(g.tensor([3.0f32]), g.tensor([0.0f32]), 1.0, Reduction::Sum)
            .item()
            .unwrap(),
        2.5,
        1e-6,
        "huber linear",
    );
    let bce = loss::bce(
        g.tensor([0.9f32, 0.2, 0.6]),
        g.tensor([1.0f32, 0.0, 1.0]),
        Reduction::Mean,
    );
    close(bce.item().unwrap(), 0.2797766, 1e-5, "bce");
    // p = 0 and p = 1 give PyTorch's clamped value (100 per wrong element), not inf or NaN.
    let p = g.tensor([0.0f32, 1.0]).requires_grad();
    let hard = loss::bce(p, g.tensor([1.0f32, 0.0]), Reduction::Mean);
    close(hard.item().unwrap(), 100.0, 1e-5, "bce at p=0,1");
    hard.backward().unwrap();
    assert!(p.grad().unwrap().unwrap().iter().all(|v| v.is_finite()));
    // A delta that is not positive is the graph's error (it stays failed: last).
    assert!(loss::huber(pred, target, 0.0, Reduction::Mean)
        .item()
        .is_err());
}

#[test]
fn linear_layer_with_bce_with_logits_reference() {
    // x = ones(5), y = zeros(3), w = arange(15).reshape(5,3)*0.1 - 0.7, b = [0.1, -0.2, 0.3]
    let mut buf = [0.0f32; 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let w = mem
        .param_from_fn::<Rank2<5, 3>>(|i| i as f32 * 0.1 - 0.7)
        .unwrap();
    let b = mem.param::<Rank1<3>>(&[0.1, -0.2, 0.3]).unwrap();
    {
        let g = Graph::new(&mut mem);
        let x = g.ones::<Rank1<5>>();
        let z = x.matmul(g.param(&w)) + g.param(&b);
        let z_vals = z.to_array().unwrap();
        for (v, e) in z_vals.iter().zip([-0.4, -0.2, 0.8]) {
            close(*v, e, 1e-5, "z");
        }
        let l = loss::bce_with_logits(z, g.zeros::<Rank1<3>>(), Reduction::Mean);
        close(l.item().unwrap(), 0.7607517, 1e-5, "loss");
        l.backward().unwrap();
    }
    let expected = [0.1337708f32, 0.1500553, 0.2299915];
    for row in mem.grad(&w).unwrap() {
        for (v, e) in row.iter().zip(expected) {
            close(*v, e, 1e-5, "w.grad");
        }
    }
    for (v, e) in mem.grad(&b).unwrap().iter().zip(expected) {
        close(*v, e, 1e-5, "b.grad");
    }
}

type Seed = (
    Linear<784, 512>,
    ReLU,
    Linear<512, 512>,
    ReLU,
    Linear<512, 10>,
);

#[test]
fn names_parameter_count_and_summary_match_pytorch() {
    let mut buf = vec![0.0f32; 2 * Seed::PARAMS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Seed::build(&mut mem, &mut Rng::new(0)).unwrap();
    assert_eq!(Seed::PARAMS, 669_706);
    let mut names = vec![];
    model.named_parameters(&mut |p| {
        names.push((p.name.to_string(), p.dims.as_slice().to_vec(), p.kind))
    });
    let expected = [
        ("0.weight", vec![512, 784], ParamKind::Weight),
        ("0.bias", vec![512], ParamKind::Bias),
        ("2.weight", vec![512, 512], ParamKind::Weight),
        ("2.bias", vec![512], ParamKind::Bias),
        ("4.weight", vec![10, 512], ParamKind::Weight),
        ("4.bias", vec![10], ParamKind::Bias),
    ];
    assert_eq!(names.len(), expected.len());
    for ((n, d, k), (en, ed, ek)) in names.iter().zip(expected.iter()) {
        assert_eq!((n.as_str(), d, k), (*en, ed, ek));
    }
    let text = summary(&model).to_string();
    assert_eq!(
        text,
        "Sequential(\n  (0): Linear(in_features=784, out_features=512, bias=True)\n  (1): ReLU()\n  \
         (2): Linear(in_features=512, out_features=512, bias=True)\n  (3): ReLU()\n  \
         (4): Linear(in_features=512, out_features=10, bias=True)\n)\nTotal params: 669,706\n"
    );
    // Default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    let bound = 1.0 / 784f32.sqrt();
    let mut flat = vec![0.0f32; 512 * 784];
    mem.read(model.0.weight.value, &mut flat).unwrap();
    assert!(flat.iter().all(|v| v.abs() <= bound));
    let mean = flat.iter().map(|&v| f64::from(v)).sum::<f64>() / flat.len() as f64;
    let var = flat
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / flat.len() as f64;
    let expected_var = f64::from(bound * bound) / 3.0;
    assert!(
        mean.abs() < 1e-3 && (var / expected_var - 1.0).abs() < 0.02,
        "mean {mean} var {var}"
    );
}

/// A 12-layer model compiles (quickly: see BENCHMARKS.md) and trains a step.
#[test]
fn twelve_layer_model() {
    type Deep = (
        Flatten<16>,
        Linear<16, 16>,
        ReLU,
        Linear<16, 16>,
        Tanh,
        Linear<16, 16>,
        SiLU,
        Linear<16, 16>,
        ReLU,
        Linear<16, 16>,
        Dropout,
        Linear<16, 4>,
    );
    const FLOATS: usize = ember_nn_core::nn::train_floats::<Deep>(
        8,
        ember_nn_core::nn::loss::Loss::CrossEntropy,
        ember_nn_core::nn::Rule::adam(),
    );
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut model = Deep::build(&mut mem, &mut Rng::new(1)).unwrap();
    let mut opt: Optimizer = Optimizer::new(&mut mem, &model, Rule::adam(), 1e-3).unwrap();
    model.train();
    {
        let g: Graph<'_, Cpu, { Deep::NODES + 16 }> = Graph::with_capacity(&mut mem);
        let x = g.from_fn((8usize, Const::<4>, Const::<4>), |i| (i as f32).cos());
        let l = loss::cross_entropy(model.forward(x), &[0, 1, 2, 3, 0, 1, 2, 3], Reduction::Mean);
        l.backward().unwrap();
    }
    opt.step(&mut mem).unwrap();
    assert_eq!(summary(&model).to_string().lines().count(), 15);
}

#[test]
fn dropout_train_and_eval() {
    let mut buf = [0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut d = Dropout::new(0.25, 11).unwrap();
    let g = Graph::new(&mut mem);
    let x = g.ones::<Rank2<20, 50>>();
    let y = d.forward(x).to_array().unwrap();
    let flat = y.as_flattened();
    let zeros = flat.iter().filter(|&&v| v == 0.0).count();
    assert!(flat
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(
        (200..300).contains(&zeros),
        "{zeros} of 1000 dropped at p = 0.25"
    );
    d.eval();
    assert_eq!(d.forward(x).to_array().unwrap(), x.to_array().unwrap());
    assert!(Dropout::new(1.0, 0).is_err());
}

#[test]
fn initialisers_have_the_right_statistics() {
    let mut buf = vec![0.0f32; 2 * 256 * 128 + 2 * 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(4);
    let lin = Linear::<128, 256>::build(&mut mem, &mut rng).unwrap();
    let (fan_in, fan_out) = (128.0f64, 256.0f64);
    let cases = [
        (Init::XavierUniform { gain: 1.0 }, 2.0 / (fan_in + fan_out)),
        (Init::XavierNormal { gain: 1.0 }, 2.0 / (fan_in + fan_out)),
        (
            Init::KaimingUniform {
                a: 0.0,
                mode: FanMode::FanIn,
            },
            2.0 / fan_in,
        ),
        (
            Init::KaimingNormal {
                a: 0.0,
                mode: FanMode::FanOut,
            },
            2.0 / fan_out,
        ),
        (
            Init::Normal {
                mean: 0.0,
                std: 0.01,
            },
            1e-4,
        ),
        (
            Init::Uniform {
                low: -0.5,
                high: 0.5,
            },
            1.0 / 12.0,
        ),
    ];
    for (rule, var) in cases {
        init::apply(&lin, &mut mem, &mut rng, |p| match p.kind {
            ParamKind::Weight => rule,
            ParamKind::Bias => Init::Constant(0.01),
        })
        .unwrap();
        let w = mem.value(&lin.weight).unwrap();
        let flat = w.as_flattened();
        let n = flat.len() as f64;
        let got = flat.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
        assert!(
            (got / var - 1.0).abs() < 0.05,
            "{rule:?}: variance {got}, expected {var}"
        );
        assert!(mem.value(&lin.bias).unwrap().iter().all(|&b| b == 0.01));
    }
    init::apply(&lin, &mut mem, &mut rng, |_| Init::Zeros).unwrap();
    assert!(mem
        .value(&lin.weight)
        .unwrap()
        .as_flattened()
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn clip_grad_norm_scales_to_the_limit() {
    let mut buf = [0.0f32; 64];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let p = mem.param::<Rank1<2>>(&[0.0, 0.0]).unwrap();
    mem.write(p.grad, &[3.0, 4.0]).unwrap();
    let norm = clip_grad_norm(&mut mem, &p, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-6);
    let g = mem.grad(&p).unwrap();
    assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
    // Below the limit nothing changes; a NaN norm is an error and changes nothing.
    assert!((clip_grad_norm(&mut mem, &p, 10.0).unwrap() - 1.0).abs() < 1e-5);
    mem.write(p.grad, &[f32::NAN, 1.0]).unwrap();
    assert!(matches!(
        clip_grad_norm(&mut mem, &p, 1.0),
        Err(Error::NonFinite { .. })
    ));
}

#[test]
fn parameters_and_optimizer_state_round_trip_exactly() {
    fn setup(
        buf: &mut [f32],
    ) -> (
        Memory<'_, Cpu>,
        (Linear<3, 4>, ReLU, Linear<4, 2>),
        Optimizer,
    ) {
        let mut mem = Memory::new(&Cpu, buf);
        let model =
            <(Linear<3, 4>, ReLU, Linear<4, 2>)>::build(&mut mem, &mut Rng::new(8)).unwrap();
        let opt = Optimizer::new(&mut mem, &model, Rule::adam(), 0.01).unwrap();
        (mem, model, opt)
    }
    fn train(
        mem: &mut Memory<'_, Cpu>,
        model: &(Linear<3, 4>, ReLU, Linear<4, 2>),
        opt: &mut Optimizer,
        steps: std::ops::Range<usize>,
    ) {
        for s in steps {
            opt.zero_grad(mem).unwrap();
            {
                let g = Graph::new(mem);
                let x = g.from_fn((2usize, Const::<3>), |i| ((i + s) as f32).sin());
                loss::cross_entropy(model.forward(x), &[0, 1], Reduction::Mean)
                    .backward()
                    .unwrap();
            }
            opt.step(mem).unwrap();
        }
    }
    // Reference: 6 uninterrupted steps.
    let mut buf_a = vec![0.0f32; 1024];
    let (mut mem_a, model_a, mut opt_a) = setup(&mut buf_a);
    train(&mut mem_a, &model_a, &mut opt_a, 0..6);

    // 3 steps, export parameters and state, import into fresh memory, 3 more steps.
    let mut buf_b = vec![0.0f32; 1024];
    let (mut mem_b, model_b, mut opt_b) = setup(&mut buf_b);
    train(&mut mem_b, &model_b, &mut opt_b, 0..3);
    let mut params = vec![];
    model_b.named_parameters(&mut |p| {
        let mut v = vec![0.0; p.param.value.len];
        mem_b.read(p.param.value, &mut v).unwrap();
        params.push(v);
    });
    let mut state = vec![0.0; opt_b.state_len()];
    opt_b.save_state(&mem_b, &mut state).unwrap();
    let (steps, lrs): (u32, Vec<f32>) =
        (opt_b.steps(), opt_b.groups().iter().map(|g| g.lr).collect());

    let mut buf_c = vec![0.0f32; 1024];
    let (mut mem_c, model_c, mut opt_c) = setup(&mut buf_c);
    let mut i = 0;
    model_c.named_parameters(&mut |p| {
        mem_c.write(p.param.value, &params[i]).unwrap();
        i += 1;
    });
    opt_c.load_state(&mut mem_c, &state, steps, &lrs).unwrap();
    assert!(opt_c
        .load_state(&mut mem_c, &state[1..], steps, &lrs)
        .is_err());
    train(&mut mem_c, &model_c, &mut opt_c, 3..6);

    let (mut a, mut c) = (vec![], vec![]);
    model_a.named_parameters(&mut |p| {
        let mut v = vec![0.0; p.param.value.len];
        mem_a.read(p.param.value, &mut v).unwrap();
        a.extend(v);
    });
    model_c.named_parameters(&mut |p| {
        let mut v = vec![0.0; p.param.value.len];
        mem_c.read(p.param.value, &mut v).unwrap();
        c.extend(v);
    });
    assert_eq!(a, c, "resumed training differs from uninterrupted training");
}

#[test]
fn runtime_mlp_matches_the_typed_model() {
    use ember_nn_core::deploy::{self, Activation, Model};
    use ember_nn_core::nn::Mlp;
    type Typed = (Linear<5, 7>, Tanh, Linear<7, 3>);
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let typed = Typed::build(&mut mem, &mut Rng::new(12)).unwrap();
    let dynm = Mlp::new(&mut mem, &mut Rng::new(12), &[5, 7, 3], Activation::Tanh).unwrap();
    // Same seed, same draws: identical parameters; same names and summary.
    let mut a = vec![];
    typed.named_parameters(&mut |p| {
        a.push((
            p.name.to_string(),
            p.dims.as_slice().to_vec(),
            p.param.value.len,
        ))
    });
    let mut b = vec![];
    dynm.named_parameters(&mut |p| {
        b.push((
            p.name.to_string(),
            p.dims.as_slice().to_vec(),
            p.param.value.len,
        ))
    });
    assert_eq!(a, b);
    assert_eq!(summary(&typed).to_string(), summary(&dynm).to_string());
    assert_eq!(dynm.param_count(), Typed::PARAMS);
    {
        let g = Graph::new(&mut mem);
        let x1 = g.from_fn((4usize, Const::<5>), |i| (i as f32 * 0.3).sin());
        let x2 = g.from_fn((4usize, 5usize), |i| (i as f32 * 0.3).sin());
        let (mut y1, mut y2) = ([0.0f32; 12], [0.0f32; 12]);
        typed.forward(x1).read(&mut y1).unwrap();
        dynm.forward(x2).read(&mut y2).unwrap();
        assert_eq!(y1, y2);
    }
    // Gradients check, and the file it exports matches it (and not another width).
    let mut params = vec![];
    dynm.named_parameters(&mut |p| params.push(p.param));
    check(&mut mem, &params, &GradCheck::default(), |g| {
        let x = g.from_fn((2usize, 5usize), |i| (i as f32).cos());
        dynm.forward(x).square().sum()
    })
    .unwrap();
    let mut bytes = deploy::Aligned([0u8; 1024]);
    let mut scratch = [0.0f32; 64];
    let n = deploy::export_f32(
        &dynm,
        &mut mem,
        |p| dynm.forward(p.input((p.rows(), 5usize))),
        &mut bytes.0,
        &mut scratch,
    )
    .unwrap();
    let model = Model::load::<Typed>(&bytes.0[..n]).unwrap();
    model.check_module(&dynm).unwrap();
    let other = Mlp::new(&mut mem, &mut Rng::new(1), &[5, 8, 3], Activation::Tanh).unwrap();
    assert!(model.check_module(&other).is_err());
    // The run-time memory estimate suffices for a training step.
    let need = dynm.train_floats(16, 2);
    let mut buf2 = vec![0.0f32; need];
    let mut mem2 = Memory::new(&Cpu, &mut buf2[..]);
    let m2 = Mlp::new(&mut mem2, &mut Rng::new(1), &[5, 7, 3], Activation::Tanh).unwrap();
    let _opt: Optimizer = Optimizer::new(&mut mem2, &m2, Rule::adam(), 0.1).unwrap();
    let g = Graph::new(&mut mem2);
    let x = g.from_fn((16usize, 5usize), |i| i as f32);
    loss::cross_entropy(m2.forward(x), &[0; 16], Reduction::Mean)
        .backward()
        .unwrap();
    // The same figure without building the model, and `None` where the
    // count would overflow instead of a wrapped, too small arena.
    assert_eq!(Mlp::train_floats_for(&[5, 7, 3], 16, 2), Some(need));
    assert!(g.peak() + 4 * m2.param_count() <= need);
    assert_eq!(
        Mlp::train_floats_for(&[784, usize::MAX / 2, 10], 64, 2),
        None
    );
    assert_eq!(Mlp::train_floats_for(&[], 64, 2), None);
}

/// An `Mlp` with dropout after each hidden activation: in training mode it
/// drops (two passes differ, a reseeded generator repeats a pass, and the
/// gradient through a fixed mask checks), in evaluation mode it is the
/// model without dropout; names, summary and inference layers are those of
/// the model without it, and its memory estimate counts the masks.
#[test]
fn runtime_mlp_with_dropout() {
    use ember_nn_core::deploy::Activation;
    use ember_nn_core::nn::Mlp;
    let widths = [5, 7, 7, 3];
    let mut buf = vec![0.0f32; 8192];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let plain = Mlp::new(&mut mem, &mut Rng::new(4), &widths, Activation::Tanh).unwrap();
    let mut dropped = Mlp::new(&mut mem, &mut Rng::new(4), &widths, Activation::Tanh)
        .unwrap()
        .with_dropout(0.3, 9)
        .unwrap();
    assert_eq!(dropped.dropout(), 0.3);
    assert_eq!(plain.dropout(), 0.0);
    assert_eq!(summary(&plain).to_string(), summary(&dropped).to_string());
    let (mut a, mut b) = (vec![], vec![]);
    plain.layers(&mut |l| a.push(l));
    dropped.layers(&mut |l| b.push(l));
    assert_eq!(a.len(), b.len());
    assert_eq!(dropped.nodes(), plain.nodes() + 2 * 2);

    let run = |m: &Mlp, mem: &mut Memory<'_, Cpu>| {
        let g = Graph::new(mem);
        let x = g.from_fn((8usize, 5usize), |i| (i as f32 * 0.37).sin() + 0.5);
        let mut y = [0.0f32; 24];
        m.forward(x).read(&mut y).unwrap();
        y
    };
    let reference = run(&plain, &mut mem);
    let first = run(&dropped, &mut mem);
    let second = run(&dropped, &mut mem);
    assert_ne!(first, reference);
    assert_ne!(first, second, "the masks do not change between passes");
    dropped.seed_dropout(11);
    let again = run(&dropped, &mut mem);
    dropped.seed_dropout(11);
    assert_eq!(run(&dropped, &mut mem), again, "a reseeded pass differs");
    dropped.eval();
    assert_eq!(run(&dropped, &mut mem), reference);
    dropped.train();

    // The gradient through a fixed mask.
    let mut params = vec![];
    dropped.named_parameters(&mut |p| params.push(p.param));
    check(&mut mem, &params, &GradCheck::default(), |g| {
        dropped.seed_dropout(5);
        let x = g.from_fn((2usize, 5usize), |i| (i as f32).cos());
        dropped.forward(x).square().sum()
    })
    .unwrap();

    // The memory estimate counts the masks, and a training step fits in it.
    let need = dropped.train_floats(16, 2);
    assert_eq!(Mlp::train_floats_with(&widths, 16, 2, true), Some(need));
    assert_eq!(
        Mlp::train_floats_with(&widths, 16, 2, false),
        Some(plain.train_floats(16, 2))
    );
    assert!(need > plain.train_floats(16, 2));
    let mut buf2 = vec![0.0f32; need];
    let mut mem2 = Memory::new(&Cpu, &mut buf2[..]);
    let m2 = Mlp::new(&mut mem2, &mut Rng::new(1), &widths, Activation::Tanh)
        .unwrap()
        .with_dropout(0.3, 2)
        .unwrap();
    let _opt: Optimizer = Optimizer::new(&mut mem2, &m2, Rule::adam(), 0.1).unwrap();
    let g = Graph::new(&mut mem2);
    let x = g.from_fn((16usize, 5usize), |i| i as f32);
    loss::cross_entropy(m2.forward(x), &[0; 16], Reduction::Mean)
        .backward()
        .unwrap();
    assert!(g.peak() + 4 * m2.param_count() <= need);
    assert!(g.len() <= 1 + m2.nodes() + 4);

    // A probability out of range is an error.
    let bad = Mlp::new(&mut mem, &mut Rng::new(1), &widths, Activation::Tanh)
        .unwrap()
        .with_dropout(1.0, 0);
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })));
}
