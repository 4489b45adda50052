//! Training checkpoints (`Checkpoint::from_bytes`, what `Checkpoint::load`
//! reads a file with): typed errors, never a panic, whatever the bytes.
#![no_main]

// The capped allocator (see fuzz/src/lib.rs).
extern crate ember_fuzz;

use ember_nn_std::checkpoint::Checkpoint;
use ember_nn_std::config::ActivationKind;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.ckpt");
    match Checkpoint::from_bytes(path, data) {
        Ok(c) => {
            let _ = c.check_architecture(path, &[4, 6, 3], Some(ActivationKind::Relu));
            let _ = c.check_architecture(path, &c.meta.widths.clone(), c.meta.activation);
            let shapes: Vec<(String, Vec<usize>)> =
                vec![("0.weight".into(), vec![6, 4]), ("0.bias".into(), vec![6])];
            let _ = c.check_parameters(path, &shapes);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
