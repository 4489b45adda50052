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
