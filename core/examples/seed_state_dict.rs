//! `print(model)`, `named_parameters()` and `print(net.state_dict())`
//! (issue 12, "the seeds"):
//!
//! ```python
//! print(f"Model structure: {model}\n\n")
//! for name, param in model.named_parameters():
//!     print(f"Layer: {name} | Size: {param.size()} | Values : {param[:2]} \n")
//!
//! net1 = nn.Sequential(OrderedDict([('hidden_linear', nn.Linear(10, 5)),
//!                                   ('hidden_activation', nn.ReLU()),
//!                                   ('output', nn.Linear(5, 2))]))
//! print(net1.state_dict())
//! ```
//!
//! `nn::summary` prints a model as `print(model)` does, then its parameter
//! count. A state_dict is the parameters by name: `named_parameters` gives
//! each one's name, shape and place in `Memory`, which `Memory::read` copies
//! out (`ember_nn_std::state_dict::named_tensors` does it in one call).
//!
//! Run: `cargo run --release -p ember-nn-core --example seed_state_dict`

use ember_nn_core::nn::{summary, Build, Flatten, Linear, Module, ReLU};
use ember_nn_core::prelude::*;

/// The quickstart's model (its forward is in ember-nn-std's seed_quickstart).
#[derive(Module)]
struct NeuralNetwork {
    flatten: Flatten<784>,
    linear_relu_stack: (
        Linear<784, 512>,
        ReLU,
        Linear<512, 512>,
        ReLU,
        Linear<512, 10>,
    ),
}

/// `nn.Sequential(OrderedDict([...]))`: the keys are the field names.
#[derive(Module)]
struct Net1 {
    hidden_linear: Linear<10, 5>,
    hidden_activation: ReLU,
    output: Linear<5, 2>,
}

/// One entry of a state_dict.
struct Entry {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// `model.state_dict()`: every parameter's name, shape and values, in order.
fn state_dict<M: Module>(model: &M, mem: &Memory<'_, Cpu>) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut r = Ok(());
    model.named_parameters(&mut |p| {
        let mut values = vec![0.0f32; p.param.value.len];
        if r.is_ok() {
            r = mem.read(p.param.value, &mut values);
        }
        out.push(Entry {
            name: p.name.to_string(),
            shape: p.dims.as_slice().to_vec(),
            values,
        });
    });
    r.map(|()| out)
}

/// The first `rows` rows of a row-major tensor, PyTorch style (4 decimals).
fn rows(values: &[f32], shape: &[usize], rows: usize) -> String {
    let width = if shape.len() == 2 {
        shape[1]
    } else {
        values.len()
    };
    let fmt_row = |r: &[f32]| {
        let v: Vec<String> = r.iter().map(|x| format!("{x:.4}")).collect();
        format!("[{}]", v.join(", "))
    };
    if shape.len() == 2 {
        let v: Vec<String> = values.chunks(width).take(rows).map(fmt_row).collect();
        format!("[{}]", v.join(",\n  "))
    } else {
        fmt_row(&values[..rows.min(values.len())])
    }
}

fn main() -> Result<()> {
    let mut buf = vec![0.0f32; 2 * 669_706 + 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(0);

    let model = NeuralNetwork::build(&mut mem, &mut rng)?;
    let printed = summary(&model).to_string();
    println!("Model structure: {printed}");
    assert_eq!(
        printed,
        "NeuralNetwork(
  (flatten): Flatten(start_dim=1, end_dim=-1)
  (linear_relu_stack): Sequential(
    (0): Linear(in_features=784, out_features=512, bias=True)
    (1): ReLU()
    (2): Linear(in_features=512, out_features=512, bias=True)
    (3): ReLU()
    (4): Linear(in_features=512, out_features=10, bias=True)
  )
)
Total params: 669,706
"
    );

    let sd = state_dict(&model, &mem)?;
    for e in &sd {
        // param[:2], shown as its first 4 columns.
        let first: Vec<f32> = e
            .values
            .chunks(*e.shape.last().unwrap())
            .take(2)
            .flat_map(|r| r[..4.min(r.len())].to_vec())
            .collect();
        println!(
            "Layer: {} | Size: {:?} | Values : {first:.4?} ...",
            e.name, e.shape
        );
    }
    let names: Vec<(&str, &[usize])> = sd.iter().map(|e| (e.name.as_str(), &e.shape[..])).collect();
    assert_eq!(
        names,
        [
            ("linear_relu_stack.0.weight", &[512, 784][..]),
            ("linear_relu_stack.0.bias", &[512]),
            ("linear_relu_stack.2.weight", &[512, 512]),
            ("linear_relu_stack.2.bias", &[512]),
            ("linear_relu_stack.4.weight", &[10, 512]),
            ("linear_relu_stack.4.bias", &[10]),
        ]
    );

    let net1 = Net1::build(&mut mem, &mut rng)?;
    let sd = state_dict(&net1, &mem)?;
    println!("\nprint(net1.state_dict())");
    for e in &sd {
        println!(
            "('{}',\n {})",
            e.name,
            rows(&e.values, &e.shape, usize::MAX)
        );
    }
    let names: Vec<&str> = sd.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "hidden_linear.weight",
            "hidden_linear.bias",
            "output.weight",
            "output.bias"
        ]
    );
    // The values are the layers' own.
    let w = mem.value(&net1.hidden_linear.weight)?;
    assert_eq!(sd[0].values, w.as_flattened());
    assert_eq!(sd[3].values, mem.value(&net1.output.bias)?);
    Ok(())
}
