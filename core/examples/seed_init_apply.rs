//! Weight initialisation with `net.apply(init_fn)` (issue 12, "the seeds"):
//!
//! ```python
//! def init_normal(m):
//!     if type(m) == nn.Linear:
//!         nn.init.normal_(m.weight, mean=0, std=0.01)
//!         nn.init.zeros_(m.bias)
//! net.apply(init_normal)
//! net[0].weight.data[0], net[0].bias.data[0]
//! ```
//!
//! Ember's `nn::init::apply` visits every parameter (its name, weight or
//! bias, shape) and writes the `Init` rule the closure picks. To act on
//! every `nn.Linear` as such, `Module::layers` visits each dense layer with
//! its weight and bias. Both are shown and must write the same numbers; the
//! rule can also be applied to one submodule (`net[0].apply(...)`).
//!
//! Run: `cargo run --release -p ember-nn-core --example seed_init_apply`

use ember_nn_core::nn::init::{self, Init};
use ember_nn_core::nn::{Build, Layer, Linear, Module, ParamKind, ReLU};
use ember_nn_core::prelude::*;

/// `net = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))`
type Net = (Linear<10, 5>, ReLU, Linear<5, 2>);

/// Every parameter's values, in `named_parameters` order.
fn values<M: Module>(m: &M, mem: &Memory<'_, Cpu>) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    let mut r = Ok(());
    m.named_parameters(&mut |p| {
        let mut v = vec![0.0f32; p.param.value.len];
        if r.is_ok() {
            r = mem.read(p.param.value, &mut v);
        }
        out.push(v);
    });
    r.map(|()| out)
}

fn main() -> Result<()> {
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0))?;
    let default = values(&net, &mem)?;

    // net.apply(init_normal), by parameter kind.
    init::apply(&net, &mut mem, &mut Rng::new(42), |p| match p.kind {
        ParamKind::Weight => Init::Normal {
            mean: 0.0,
            std: 0.01,
        },
        ParamKind::Bias => Init::Zeros,
    })?;
    let by_kind = values(&net, &mem)?;
    // net[0].weight.data[0], net[0].bias.data[0]
    println!(
        "net[0].weight.data[0] = {:?}\nnet[0].bias.data[0] = {}",
        mem.value(&net.0.weight)?[0],
        mem.value(&net.0.bias)?[0]
    );

    // The same, the way init_normal reads: for every nn.Linear, its weight and bias.
    init::apply(&net, &mut mem, &mut Rng::new(7), |_| Init::Constant(1.0))?;
    let mut rng = Rng::new(42);
    let mut r = Ok(());
    net.layers(&mut |layer| {
        if let (Layer::Dense { weight, bias, .. }, Ok(())) = (layer, &r) {
            r = mem
                .write_fn(weight.value, |_| 0.0 + 0.01 * rng.normal())
                .and_then(|()| mem.fill(bias.value, 0.0));
        }
    });
    r?;
    let by_layer = values(&net, &mem)?;
    assert_eq!(by_kind, by_layer, "both ways write the same numbers");

    // What init_normal promises: zero biases, weights ~ N(0, 0.01²), not the default U(±1/√in).
    let weights: Vec<f32> = [&by_kind[0], &by_kind[2]]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let std = (weights.iter().map(|w| w * w).sum::<f32>() / weights.len() as f32).sqrt();
    println!("weights: {} values, std {std:.4}", weights.len());
    assert!(by_kind[1].iter().chain(&by_kind[3]).all(|&b| b == 0.0));
    assert!((0.006..0.014).contains(&std), "std {std}");
    assert!(weights.iter().all(|w| w.abs() < 0.05));
    assert!(
        default[0].iter().any(|w| w.abs() > 0.1),
        "the default init is wider"
    );

    // Per submodule: net[0].apply(init_xavier); net[2].apply(init_42)
    init::apply(&net.0, &mut mem, &mut Rng::new(1), |p| match p.kind {
        ParamKind::Weight => Init::XavierUniform { gain: 1.0 },
        ParamKind::Bias => Init::Keep,
    })?;
    init::apply(&net.2, &mut mem, &mut Rng::new(1), |_| Init::Constant(42.0))?;
    let after = values(&net, &mem)?;
    let bound = (6.0f32 / (10.0 + 5.0)).sqrt();
    assert!(after[0].iter().all(|w| w.abs() <= bound) && after[0] != by_kind[0]);
    assert_eq!(after[1], by_kind[1], "net[0].bias kept");
    assert!(after[2].iter().chain(&after[3]).all(|&v| v == 42.0));
    println!("net[0]: Xavier uniform within ±{bound:.3}; net[2]: all 42");
    Ok(())
}
