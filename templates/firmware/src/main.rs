//! Runs an Ember model from flash: loads `model/model.emb` in place, infers
//! on the sample input of `model/input.txt`, prints the output and the
//! class, and exits with success if the output is the host's (build.rs).
//!
//! Logs with defmt: over RTT on a board (feature `board`, the default, read
//! by `probe-rs run`), over semihosting under QEMU (feature `qemu`).

#![no_std]
#![no_main]

use ember_nn_core::deploy::{argmax, Aligned, Model};

// The runtime (reset, RAM initialization, `#[entry]`) and the
// critical-section implementation defmt's transports need.
#[cfg(target_arch = "arm")]
use {cortex_m as _, cortex_m_rt::entry};
#[cfg(target_arch = "riscv32")]
use {riscv as _, riscv_rt::entry};
// defmt's transport.
#[cfg(feature = "board")]
use defmt_rtt as _;
#[cfg(feature = "qemu")]
use defmt_semihosting as _;
#[cfg(all(feature = "board", feature = "qemu"))]
compile_error!("one transport: the features `board` (the default) and `qemu` exclude each other");

/// From the model file's header, by build.rs: `Net` (its layer types),
/// `INPUTS`, `OUTPUTS`, `WIDEST`, `ARCHITECTURE`, `INT8`; and the sample
/// `INPUT` with the host's output for it, `EXPECTED`.
#[allow(dead_code)] // LAST_INPUTS
mod model {
    #[allow(unused_imports)]
    use ember_nn_core::nn::*;
    include!(concat!(env!("OUT_DIR"), "/model.rs"));
}
use model::*;

/// The weights, in flash, aligned so that they are read in place: nothing is copied to RAM.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("EMBER_MODEL_FILE")));

#[entry]
fn main() -> ! {
    // Checks the file (layout, CRC) and that its layers are `Net`'s.
    let model = defmt::unwrap!(Model::load::<Net>(&MODEL.0));
    defmt::println!(
        "model {=str}, {=str}, {=usize} bytes in flash",
        ARCHITECTURE,
        if INT8 { "int8" } else { "f32" },
        MODEL.0.len()
    );

    // Your input goes here: a sensor reading, an image, ...
    let input: &[f32; INPUTS] = &INPUT;
    let mut output = [0.0f32; OUTPUTS];
    // (`INT8` is a constant: the other branch is compiled out.)
    if INT8 {
        // int8 takes the input quantized, and gives the output back as real numbers.
        let mut quantized = [0i8; INPUTS];
        let mut scratch = [0i8; 2 * WIDEST];
        defmt::unwrap!(model.infer_i8(input, &mut quantized, &mut scratch, &mut output));
    } else {
        let mut scratch = [0.0f32; 2 * WIDEST];
        output.copy_from_slice(defmt::unwrap!(model.infer_f32(input, &mut scratch)));
    }
    defmt::println!("output: {}", output);
    defmt::println!("class: {=usize}", argmax(&output));

    let same = output == EXPECTED;
    defmt::println!(
        "the host's output: {=str}",
        if same { "the same" } else { "DIFFERENT" }
    );
    exit(same)
}

/// Ends the run. On Arm, with an exit status for QEMU or `probe-rs run`
/// (semihosting: without a debugger attached, the core halts on a fault).
fn exit(success: bool) -> ! {
    #[cfg(target_arch = "arm")]
    cortex_m_semihosting::debug::exit(if success { Ok(()) } else { Err(()) });
    let _ = success;
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // The location only: formatting the message would link `core::fmt`.
    if let Some(at) = info.location() {
        defmt::error!("panic at {=str}:{=u32}", at.file(), at.line());
    }
    exit(false)
}
