//! A state_dict saved by PyTorch (`safetensors.torch.save_file`) loads into
//! the same architecture and gives PyTorch's outputs. The fixture and the
//! expected logits were made by the program recorded in the JSON file.

use ember_nn_core::deploy::Activation;
use ember_nn_core::nn::{Forward, Mlp};
use ember_nn_core::{Cpu, Graph, Memory, Rng};
use ember_nn_std::state_dict;
use std::path::Path;

#[test]
fn pytorch_state_dict_gives_pytorch_outputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("torch_mlp_784_16_10.json")).unwrap(),
    )
    .unwrap();
    let mut buf = vec![0.0f32; 256 * 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), &[784, 16, 10], Activation::Relu).unwrap();
    state_dict::load(
        &dir.join("torch_mlp_784_16_10.safetensors"),
        &model,
        &mut mem,
    )
    .unwrap();
    let x: Vec<f32> = (0..3 * 784)
        .map(|k| (0.001 * k as f64).sin() as f32)
        .collect();
    let g = Graph::new(&mut mem);
    let y = model.forward(g.from_slice((3usize, 784usize), &x));
    let mut got = vec![0.0f32; 30];
    y.read(&mut got).unwrap();
    let want: Vec<f32> = expected["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "ember {a} vs PyTorch {b}");
    }
    // The same file into another architecture is a clear error naming the tensor.
    let wrong = Mlp::new(&mut mem, &mut Rng::new(0), &[784, 32, 10], Activation::Relu).unwrap();
    let e = state_dict::load(
        &dir.join("torch_mlp_784_16_10.safetensors"),
        &wrong,
        &mut mem,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("0.weight") && e.to_string().contains("[16, 784]"),
        "{e}"
    );
}

/// A model class of the user's own, derived: a state_dict saved from the same
/// PyTorch class (its names `hidden.weight`, `out.bias`, ...) loads into it by
/// name, and one with a missing or misnamed tensor is refused.
#[test]
fn a_derived_class_loads_pytorchs_state_dict_by_name() {
    use ember_nn_core::nn::{Build, Linear, Module, ReLU};
    use ember_nn_std::state_dict::{load_bytes, to_bytes, NamedTensor};

    #[derive(Module)]
    struct Mlp {
        hidden: Linear<10, 5>,
        act: ReLU,
        out: Linear<5, 2>,
    }

    let tensor = |name: &str, shape: &[usize]| NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data: (0..shape.iter().product::<usize>())
            .map(|i| i as f32 / 8.0 - 1.0)
            .collect(),
    };
    let state = vec![
        tensor("hidden.weight", &[5, 10]),
        tensor("hidden.bias", &[5]),
        tensor("out.weight", &[2, 5]),
        tensor("out.bias", &[2]),
    ];
    let bytes = to_bytes(&state, None).unwrap();
    let mut buf = vec![0.0f32; 256];
    let mut mem = ember_nn_core::Memory::new(&ember_nn_core::Cpu, &mut buf[..]);
    let model = Mlp::build(&mut mem, &mut ember_nn_core::Rng::new(0)).unwrap();
    let path = std::path::Path::new("mlp.safetensors");
    load_bytes(path, &bytes, &model, &mut mem, "").unwrap();
    let w = mem.value(&model.out.weight).unwrap();
    assert_eq!(w[1], [-0.375, -0.25, -0.125, 0.0, 0.125]);
    let b = mem.value(&model.hidden.bias).unwrap();
    assert_eq!(b, [-1.0, -0.875, -0.75, -0.625, -0.5]);

    let mut renamed = state.clone();
    renamed[2].name = "output.weight".into();
    let bytes = to_bytes(&renamed, None).unwrap();
    let e = load_bytes(path, &bytes, &model, &mut mem, "").unwrap_err();
    assert!(e.to_string().contains("out.weight"), "{e}");
}

/// The tutorials' `class MLP(nn.Module)` (`hidden = Linear(10, 5)`,
/// `out = Linear(5, 2)`, `relu` in `forward`), its state_dict saved by
/// PyTorch (`scripts/torch-fixtures.py`), loads by name into the same class
/// written the Ember way and gives PyTorch's logits.
#[test]
fn the_tutorials_mlp_class_loads_pytorchs_state_dict() {
    use ember_nn_core::nn::{Build, Linear, Module};
    use ember_nn_core::{Batch, Tensor};

    #[derive(Module)]
    struct Mlp {
        hidden: Linear<10, 5>,
        out: Linear<5, 2>,
    }
    impl Mlp {
        fn forward<'t>(&self, x: Tensor<'t, Batch<10>>) -> Tensor<'t, Batch<2>> {
            self.out.forward(self.hidden.forward(x).relu())
        }
    }

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("torch_mlp_class.json")).unwrap())
            .unwrap();
    let rows = |key: &str| -> Vec<f32> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect()
    };
    let mut buf = vec![0.0f32; 1024];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Mlp::build(&mut mem, &mut Rng::new(7)).unwrap();
    state_dict::load(&dir.join("torch_mlp_class.safetensors"), &net, &mut mem).unwrap();
    let x = rows("input");
    let g = Graph::new(&mut mem);
    let y = net.forward(g.from_slice((3usize, ember_nn_core::Const::<10>), &x));
    let mut got = [0.0f32; 6];
    y.read(&mut got).unwrap();
    for (g, w) in got.iter().zip(rows("logits")) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{got:?} vs {w}");
    }
}

/// Gradients at kinks and ties, and a long float32 mean, against the numbers
/// PyTorch computed (`scripts/torch-fixtures.py`).
#[test]
fn kinks_ties_and_long_sums_match_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("torch_conventions.json")).unwrap())
            .unwrap();
    /// The numbers of a nested JSON array, row-major.
    fn flat(v: &serde_json::Value) -> Vec<f32> {
        match v.as_array() {
            Some(a) => a.iter().flat_map(flat).collect(),
            None => vec![v.as_f64().unwrap() as f32],
        }
    }
    let mut buf = vec![0.0f32; 1 << 18];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let g = Graph::new(&mut mem);
    let check = |name: &str, grad: &[f32]| {
        assert_eq!(grad, flat(&f[name]["grad"]).as_slice(), "{name}");
    };
    let x = g
        .from_slice((5usize,), &flat(&f["clamp_0_1_grad"]["x"]))
        .requires_grad();
    x.clamp(0.0, 1.0).sum().backward().unwrap();
    check("clamp_0_1_grad", &x.grad_vec());
    let x = g
        .from_slice((5usize,), &flat(&f["max_grad"]["x"]))
        .requires_grad();
    x.max().mul_scalar(6.0).backward().unwrap();
    check("max_grad", &x.grad_vec());
    let x = g
        .from_slice((2usize, 2usize), &flat(&f["amax_dim1_grad"]["x"]))
        .requires_grad();
    x.max_axis::<1>().sum().backward().unwrap();
    check("amax_dim1_grad", &x.grad_vec());
    let x = g
        .from_slice((2usize, 2usize), &flat(&f["amax_dim0_grad"]["x"]))
        .requires_grad();
    x.max_axis::<0>().sum().backward().unwrap();
    check("amax_dim0_grad", &x.grad_vec());
    let x = g
        .from_slice((3usize,), &flat(&f["relu_grad"]["x"]))
        .requires_grad();
    x.relu().sum().backward().unwrap();
    check("relu_grad", &x.grad_vec());
    let x = g
        .from_slice((3usize,), &flat(&f["abs_grad"]["x"]))
        .requires_grad();
    x.abs().sum().backward().unwrap();
    check("abs_grad", &x.grad_vec());
    let x = g
        .from_slice((3usize,), &flat(&f["leaky_relu_0_1_grad"]["x"]))
        .requires_grad();
    x.leaky_relu(0.1).sum().backward().unwrap();
    check("leaky_relu_0_1_grad", &x.grad_vec());
    let x = g
        .from_slice((3usize,), &flat(&f["elu_1_grad"]["x"]))
        .requires_grad();
    x.elu(1.0).sum().backward().unwrap();
    check("elu_1_grad", &x.grad_vec());

    let n = f["long_mean"]["n"].as_u64().unwrap() as usize;
    let vals: Vec<f32> = (0..n).map(|i| 0.1 + (i % 7) as f32 * 1e-3).collect();
    let exact = f["long_mean"]["exact"].as_f64().unwrap();
    let torch_err = f["long_mean"]["torch_rel_err"].as_f64().unwrap();
    let mean = f64::from(g.from_slice((n,), &vals).mean().item().unwrap());
    let err = ((mean - exact) / exact).abs();
    assert!(
        err <= torch_err.max(1e-7) * 2.0,
        "mean error {err:e}, PyTorch's {torch_err:e}"
    );
}

trait GradVec {
    fn grad_vec(&self) -> Vec<f32>;
}
impl<S: ember_nn_core::Shape> GradVec for ember_nn_core::Tensor<'_, S, Cpu> {
    fn grad_vec(&self) -> Vec<f32> {
        let mut v = vec![0.0f32; self.numel()];
        assert!(self.read_grad(&mut v).unwrap(), "no gradient");
        v
    }
}

/// Tensors named `{layer}.weight` and `{layer}.bias` with these shapes;
/// each layer's values start at its own offset, so that which file layer
/// went where shows in the model.
fn layers(spec: &[(&str, usize, usize)]) -> Vec<ember_nn_std::state_dict::NamedTensor> {
    spec.iter()
        .enumerate()
        .flat_map(|(k, &(name, out, inp))| {
            let base = 100.0 * (k + 1) as f32;
            [
                ember_nn_std::state_dict::NamedTensor {
                    name: format!("{name}.weight"),
                    shape: vec![out, inp],
                    data: (0..out * inp).map(|i| base + i as f32 / 1000.0).collect(),
                },
                ember_nn_std::state_dict::NamedTensor {
                    name: format!("{name}.bias"),
                    shape: vec![out],
                    data: (0..out).map(|i| -base - i as f32).collect(),
                },
            ]
        })
        .collect()
}

/// Loads `spec` into an `Mlp` of `widths` with `load_layers`; on success,
/// each model layer's first weight, so the caller sees which file layer it got.
fn load_spec(
    widths: &[usize],
    spec: &[(&str, usize, usize)],
    names: Option<&[&str]>,
) -> Result<
    (ember_nn_std::state_dict::LayerMatch, Vec<f32>),
    ember_nn_std::state_dict::StateDictError,
> {
    use ember_nn_std::state_dict::{load_layers, to_bytes};
    let bytes = to_bytes(&layers(spec), None).unwrap();
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), widths, Activation::Relu).unwrap();
    let names: Option<Vec<String>> = names.map(|n| n.iter().map(|s| s.to_string()).collect());
    let m = load_layers(
        Path::new("torch.safetensors"),
        &bytes,
        &model,
        &mut mem,
        names.as_deref(),
    )?;
    let firsts = model
        .linears()
        .iter()
        .map(|l| {
            let mut w = vec![0.0f32; l.weight.value.len];
            mem.read(l.weight.value, &mut w).unwrap();
            w[0]
        })
        .collect();
    Ok((m, firsts))
}

/// A PyTorch class's state_dict (`fc1`, `fc2`, `head`) loads into the
/// `Mlp` of the same widths by position, and says how; the model's own
/// names load by name, with nothing to say.
#[test]
fn other_layer_names_map_by_position_and_shape() {
    use ember_nn_std::state_dict::LayerMatch;
    let (m, firsts) = load_spec(
        &[8, 6, 4, 3],
        &[("fc1", 6, 8), ("fc2", 4, 6), ("head", 3, 4)],
        None,
    )
    .unwrap();
    assert_eq!(firsts, [100.0, 200.0, 300.0]);
    assert_eq!(
        m.note().unwrap(),
        "the file's layer names (fc1, fc2, head) are not the model's (0, 2, 4); mapped by position and shape: fc1 -> 0, fc2 -> 2, head -> 4"
    );
    let (m, _) = load_spec(&[8, 6, 3], &[("0", 6, 8), ("2", 3, 6)], None).unwrap();
    assert_eq!(m, LayerMatch::ByName);
    assert_eq!(m.note(), None);

    // Digit runs order as numbers (`l2` before `l10`; as text `l10` would
    // come first), and between same-shaped layers that order decides.
    let (_, firsts) = load_spec(
        &[4, 6, 6, 6, 3],
        &[("l1", 6, 4), ("l10", 6, 6), ("l2", 6, 6), ("l11", 3, 6)],
        None,
    )
    .unwrap();
    assert_eq!(firsts, [100.0, 300.0, 200.0, 400.0]);
    // Shapes decide where names would put the layers in the wrong order.
    let (m, firsts) =
        load_spec(&[4, 6, 3], &[("encoder", 6, 4), ("classifier", 3, 6)], None).unwrap();
    assert_eq!(firsts, [100.0, 200.0]);
    assert!(m.note().unwrap().ends_with("encoder -> 0, classifier -> 2"));

    // Names given: in that order, whatever the names' order.
    let (m, firsts) =
        load_spec(&[6, 6, 6], &[("a", 6, 6), ("b", 6, 6)], Some(&["b", "a"])).unwrap();
    assert_eq!(firsts, [200.0, 100.0]);
    assert!(m
        .note()
        .unwrap()
        .contains("mapped as given: b -> 0, a -> 2"));
    let (_, firsts) = load_spec(&[6, 6, 6], &[("a", 6, 6), ("b", 6, 6)], None).unwrap();
    assert_eq!(firsts, [100.0, 200.0]);
}

/// Names that differ and shapes that do not fit are an error that says the
/// names differ and lists the file's; a file with the model's names and
/// other shapes is still "a different architecture"; given names must be
/// the file's and fit.
#[test]
fn layers_that_fit_neither_by_name_nor_by_position_are_refused() {
    use ember_nn_std::state_dict::StateDictError;
    let e = load_spec(
        &[8, 6, 4, 3],
        &[("fc1", 5, 8), ("fc2", 4, 5), ("head", 3, 4)],
        None,
    )
    .unwrap_err();
    assert!(matches!(e, StateDictError::Names { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("the file's layers are named fc1, fc2, head, not 0, 2, 4 as the model's")
            && text.contains(
                "no layer of the file has the shapes of the model's `0` (weight [6, 8], bias [6])"
            )
            && !text.contains("different architecture"),
        "{text}"
    );
    let e = load_spec(
        &[8, 6, 3],
        &[("fc1", 6, 8), ("fc2", 3, 6), ("fc3", 3, 3)],
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("the file has 3 layers, the model 2"),
        "{e}"
    );
    // A tensor that is no layer's weight or bias.
    let mut odd = layers(&[("fc1", 6, 8), ("fc2", 3, 6)]);
    odd[1].name = "fc1.running_mean".into();
    let bytes = ember_nn_std::state_dict::to_bytes(&odd, None).unwrap();
    let mut buf = vec![0.0f32; 4096];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let model = Mlp::new(&mut mem, &mut Rng::new(0), &[8, 6, 3], Activation::Relu).unwrap();
    let e = ember_nn_std::state_dict::load_layers(Path::new("t"), &bytes, &model, &mut mem, None)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("tensor `fc1.running_mean` is not a layer's weight or bias"),
        "{e}"
    );

    let e = load_spec(&[8, 7, 3], &[("0", 6, 8), ("2", 3, 6)], None).unwrap_err();
    assert!(matches!(e, StateDictError::Shape { .. }), "{e}");
    let e = load_spec(&[8, 6, 6, 3], &[("0", 6, 8), ("2", 6, 6)], None).unwrap_err();
    assert!(
        matches!(&e, StateDictError::Missing { name, .. } if name == "4.weight"),
        "{e}"
    );

    let e = load_spec(
        &[8, 6, 3],
        &[("fc1", 6, 8), ("fc2", 3, 6)],
        Some(&["fc1", "out"]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, StateDictError::Missing { name, .. } if name == "out.weight"),
        "{e}"
    );
    let e = load_spec(
        &[8, 6, 3],
        &[("fc1", 6, 8), ("fc2", 3, 6)],
        Some(&["fc2", "fc1"]),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("tensor `fc2.weight` has shape [3, 6], the model expects [6, 8]"),
        "{e}"
    );
    let e = load_spec(&[8, 6, 3], &[("fc1", 6, 8), ("fc2", 3, 6)], Some(&["fc1"])).unwrap_err();
    assert!(
        e.to_string()
            .contains("1 names given for the model's 2 layers"),
        "{e}"
    );
    let e = load_spec(
        &[8, 6, 3],
        &[("fc1", 6, 8), ("fc2", 3, 6), ("extra", 2, 2)],
        Some(&["fc1", "fc2"]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, StateDictError::Unexpected { name, .. } if name == "extra.bias"),
        "{e}"
    );
}
