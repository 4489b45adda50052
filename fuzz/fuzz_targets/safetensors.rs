//! safetensors state_dict import (`state_dict::load_bytes`, PyTorch's
//! `load_state_dict(strict=True)`) into an `Mlp`, and the mapping of a
//! file's layers by position or by `--names` (`state_dict::load_layers`):
//! typed errors, never a panic, whatever the bytes.
//!
//! The first byte picks the model (one of three architectures, the seeds'
//! in fuzz/corpus/safetensors) and the name prefix; the rest is the file.
#![no_main]

use ember_fuzz::split_byte;
use ember_nn_core::deploy::Activation;
use ember_nn_core::nn::Mlp;
use ember_nn_core::{Cpu, Memory, Rng};
use ember_nn_std::state_dict;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const ARCHS: [&[usize]; 3] = [&[4, 6, 3], &[2, 3], &[3, 5, 4, 2]];

fuzz_target!(|data: &[u8]| {
    let Some((sel, file)) = split_byte(data) else {
        return;
    };
    let widths = ARCHS[usize::from(sel) % ARCHS.len()];
    let prefix = if sel & 0x80 != 0 { "model." } else { "" };
    let mut buf = vec![0.0f32; 256];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let Ok(mlp) = Mlp::new(&mut mem, &mut Rng::new(1), widths, Activation::Relu) else {
        return;
    };
    let path = Path::new("fuzz.safetensors");
    if let Err(e) = state_dict::load_bytes(path, file, &mlp, &mut mem, prefix) {
        // Errors render (and name the file).
        let _ = e.to_string();
    }
    // By position (the file's names need not be the model's), or by names
    // given as `--names` would (some of the seeds' names, some not).
    let names: Vec<String> = ["fc1", "0", "head", "2"][..widths.len().min(4)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let given = (sel & 0x40 != 0).then_some(&names[..]);
    match state_dict::load_layers(path, file, &mlp, &mut mem, given) {
        Ok(m) => {
            let _ = m.note();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
