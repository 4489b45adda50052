//! A state_dict saved by PyTorch (`safetensors.torch.save_file`) loads into
//! the same architecture and gives PyTorch's outputs. The fixture and the
//! expected logits were made by the program recorded in the JSON file.

use ember_core::deploy::Activation;
use ember_core::nn::{Forward, Mlp};
use ember_core::{Cpu, Graph, Memory, Rng};
use ember_std::state_dict;
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
    use ember_core::nn::{Build, Linear, Module, ReLU};
    use ember_std::state_dict::{load_bytes, to_bytes, NamedTensor};

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
    let mut mem = ember_core::Memory::new(&ember_core::Cpu, &mut buf[..]);
    let model = Mlp::build(&mut mem, &mut ember_core::Rng::new(0)).unwrap();
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
