//! `cargo fuzz run parse_weights`: the weight-file parser and the inference it
//! admits must never panic, whatever the bytes.
#![no_main]

use ember_core::deploy::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Copy into 4-aligned storage so that valid files are not rejected as misaligned.
    let mut words = vec![0u32; data.len().div_ceil(4)];
    // SAFETY: u8 has no alignment or validity requirements and the slice
    // covers exactly the words' bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) };
    bytes[..data.len()].copy_from_slice(data);
    if let Ok(model) = Model::parse(&bytes[..data.len()]) {
        let x = vec![0.25f32; model.input_features()];
        if model.is_int8() {
            let mut s = vec![0i8; model.scratch_len()];
            let mut q = vec![0i8; model.input_features()];
            let mut out = vec![0.0f32; model.output_features()];
            let _ = model.infer_i8(&x, &mut q, &mut s, &mut out);
            let pixels = vec![200u8; model.input_features()];
            let _ = model.infer_u8(&pixels, &mut s);
        } else {
            let mut s = vec![0.0f32; model.scratch_len()];
            let _ = model.infer_f32(&x, &mut s);
        }
    }
});
