//! Ember on a microcontroller, with no allocator: a small MLP learns XOR on
//! the device (training), and a FashionMNIST classifier trained on the host
//! runs from flash, in f32 and in int8 (inference).
//!
//! Built for a bare-metal target (`target_os = "none"`) this is firmware:
//! on Cortex-M `cortex-m-rt` starts it, defmt logs over semihosting (feature
//! `qemu`, the default, for QEMU's `mps2-an386` and `microbit`) or RTT
//! (feature `stm32f411`, for a real board); on RISC-V (`riscv32imc`, QEMU's
//! `virt`) `riscv-rt` starts it and defmt logs over the UART. The run ends
//! with a pass/fail exit status. Built for the host it is an ordinary program running the same
//! code, which keeps it under the workspace's host lints and tests. See
//! `README.md`.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

/// Logs a line: defmt on the microcontroller, `println!` on the host. Format
/// strings use only `{}`, which both understand.
// (Unused in a build with none of the features.)
#[cfg(target_os = "none")]
#[allow(unused_macros)]
macro_rules! say {
    ($($arg:tt)*) => { defmt::println!($($arg)*) };
}
#[cfg(not(target_os = "none"))]
#[allow(unused_macros)]
macro_rules! say {
    ($($arg:tt)*) => { std::println!($($arg)*) };
}

#[cfg(finetune)]
mod finetune;
#[cfg(all(finetune, target_os = "none", feature = "qemu"))]
mod host_file;
// FashionMNIST images (inference.rs), or the held-out rows of a data
// file's model when the model directory holds them (rows.rs, cfg
// `test_rows`), under one name: the rest of the firmware runs either.
#[cfg(all(any(model_f32, model_int8), not(test_rows)))]
mod inference;
#[cfg(all(any(model_f32, model_int8), test_rows))]
#[path = "rows.rs"]
mod inference;
// Per-node costs of a graph model (a CNN's graph files).
#[cfg(feature = "mlperf")]
mod mlperf;
#[cfg(any(
    all(model_graph, not(test_rows)),
    all(mlperf_graph, target_os = "none")
))]
mod profile;
#[cfg(feature = "xor")]
mod xor;
#[cfg(all(feature = "mlperf", target_os = "none", not(target_arch = "arm")))]
compile_error!("the feature `mlperf` is for Cortex-M (QEMU's mps2-an386) and host builds");

/// Points that must be classified correctly for the run to pass.
#[cfg(feature = "xor")]
const REQUIRED_CORRECT: usize = 4;

#[cfg(feature = "xor")]
fn summary(r: &xor::Report) {
    say!(
        "loss {} -> {}, {} of 4 points right ({} required)",
        r.first_loss,
        r.final_loss,
        r.correct,
        r.required
    );
    say!(
        "arena floats: {} persistent, {} for a training step of {} of {} nodes; {} of {} used",
        r.persistent_floats,
        r.graph_floats,
        r.graph_nodes,
        xor::NODES,
        r.persistent_floats + r.graph_floats,
        xor::ARENA_FLOATS
    );
    say!(
        "on-device training: {}",
        if r.passed() { "pass" } else { "FAIL" }
    );
}

/// Says why a Cortex-M0 build of a CNN has no f32 model.
#[cfg(all(cortex_m0, feature = "f32-model", not(model_f32), model_graph))]
fn f32_left_out() {
    say!(
        "f32 model: left out of Cortex-M0 builds (its arena of {} bytes does not fit the micro:bit's 16 KiB of RAM, and it would run in soft float); int8 only",
        4 * inference::SCRATCH
    );
}
/// Says why a Cortex-M0 build has no f32 model.
#[cfg(all(
    cortex_m0,
    feature = "f32-model",
    not(model_f32),
    not(test_rows),
    not(model_graph)
))]
fn f32_left_out() {
    say!("f32 model: left out of Cortex-M0 builds (its 437732 bytes do not fit the micro:bit's 256 KiB of flash); int8 only");
}
/// Says why a Cortex-M0 build of a data file's model has no f32 model.
#[cfg(all(cortex_m0, feature = "f32-model", not(model_f32), test_rows))]
fn f32_left_out() {
    say!("f32 model: left out of this Cortex-M0 build (over the 64 KiB firmware-example/build.rs allows it beside the rest in the micro:bit's flash); int8 only");
}

/// A node's cost on the host: nanoseconds.
#[cfg(all(not(target_os = "none"), model_graph, not(test_rows)))]
const HOST_COST: profile::Cost = profile::Cost {
    convert: |ns| ns,
    unit: "ns (host)",
};

#[cfg(not(target_os = "none"))]
fn main() {
    // (Never changed in a build without any of the features.)
    #[allow(unused_mut)]
    let mut passed = true;
    #[cfg(feature = "xor")]
    {
        let mut arena = [0.0f32; xor::ARENA_FLOATS];
        match xor::run(&mut arena, xor::SEED, REQUIRED_CORRECT) {
            Ok(r) => {
                summary(&r);
                passed &= r.passed();
            }
            Err(e) => {
                eprintln!("error: {e}");
                passed = false;
            }
        }
    }
    #[cfg(any(model_f32, model_int8))]
    {
        let start = std::time::Instant::now();
        let clock = move || start.elapsed().as_nanos() as u64;
        let timed = |r: Option<inference::Report>| match r {
            Some(r) => {
                inference::summary(&r);
                say!(
                    "{}: {} ns per inference, Model::load {} ns (host, debug builds are slow; not deterministic)",
                    r.name,
                    r.ticks / r.images.max(1) as u64,
                    r.load_ticks
                );
                r.passed()
            }
            None => false,
        };
        #[cfg(model_f32)]
        {
            let mut input = [0.0f32; inference::model::INPUTS];
            let mut scratch = vec![0.0f32; inference::SCRATCH];
            passed &= timed(inference::run_f32(&mut input, &mut scratch, &clock));
            #[cfg(all(model_graph, not(test_rows)))]
            profile::f32(&mut input, &mut scratch, &clock, &HOST_COST);
        }
        #[cfg(model_int8)]
        {
            let mut scratch = vec![0i8; inference::SCRATCH_I8];
            passed &= timed(inference::run_int8(&mut scratch, &clock));
            #[cfg(all(model_graph, not(test_rows)))]
            profile::int8(&mut scratch, &clock, &HOST_COST);
        }
    }
    #[cfg(feature = "mlperf")]
    {
        let mut scratch = vec![0i8; mlperf::SCRATCH];
        let start = std::time::Instant::now();
        let clock = move || start.elapsed().as_nanos() as u64;
        match mlperf::run(&mut scratch, &clock) {
            Some(r) => {
                say!(
                    "mlperf-{}: {} of {} inputs' int8 outputs match the host's byte for byte; {} multiply-adds; {} ns per inference, the file's parse {} ns (host, not deterministic)",
                    mlperf::NAME,
                    r.matches,
                    mlperf::inputs(),
                    mlperf::MACS,
                    r.ticks / r.inputs.max(1) as u64,
                    r.load_ticks
                );
                passed &= r.passed();
            }
            None => passed = false,
        }
    }
    #[cfg(finetune)]
    {
        let mut arena = vec![0.0f32; finetune::ARENA_FLOATS];
        let start = std::time::Instant::now();
        let clock = move || start.elapsed().as_nanos() as u64;
        // The adapted model goes to a file beside the QEMU run's, written
        // whole under a temporary name and renamed.
        let path = env!("EMBER_FINETUNED_PATH");
        let tmp = format!("{path}.tmp");
        let mut file = Vec::new();
        let r = finetune::run(&mut arena, &clock, &mut |bytes| {
            file.extend_from_slice(bytes);
            Ok(())
        });
        let saved = std::fs::write(&tmp, &file).and_then(|()| std::fs::rename(&tmp, path));
        match r {
            Ok(r) => {
                finetune::summary(&r);
                match saved {
                    Ok(()) => say!("finetune: adapted model written to {path}"),
                    Err(e) => {
                        eprintln!("finetune: {path}: {e}");
                        passed = false;
                    }
                }
                say!(
                    "finetune: {} ns per training sample (host, not deterministic)",
                    r.train_ticks / r.samples.max(1) as u64
                );
                passed &= r.passed();
            }
            Err(e) => {
                eprintln!("fine-tuning failed: {e}");
                passed = false;
            }
        }
    }
    say!("{}", if passed { "PASS" } else { "FAIL" });
    if !passed {
        std::process::exit(1);
    }
}

/// The run on the microcontroller, the same on every platform.
#[cfg(target_os = "none")]
mod firmware {
    #[cfg(all(cortex_m0, feature = "f32-model", not(model_f32)))]
    use super::f32_left_out;
    #[cfg(finetune)]
    use super::finetune;
    #[cfg(any(model_f32, model_int8))]
    use super::inference;
    #[cfg(feature = "mlperf")]
    use super::mlperf;
    #[cfg(feature = "xor")]
    use super::{summary, xor, REQUIRED_CORRECT};
    use core::sync::atomic::{AtomicBool, Ordering};
    #[cfg(finetune)]
    use ember_nn_core::deploy::FormatError;

    #[cfg(all(feature = "qemu", feature = "stm32f411"))]
    compile_error!("enable one of the features `qemu` (default) and `stm32f411`, not both");
    #[cfg(not(any(feature = "qemu", feature = "stm32f411")))]
    compile_error!("enable one of the features `qemu` (default) and `stm32f411`");

    /// `run` has started (it takes its buffers once).
    static STARTED: AtomicBool = AtomicBool::new(false);

    /// Runs everything the features ask for, logging as it goes; returns the
    /// verdict. The platform's entry point calls it once, after starting the
    /// clock, and exits with its result.
    fn run() -> bool {
        // Everything lives in .bss.
        // The XOR model, its gradients, Adam's state and every graph, sized by
        // `nn::train_floats` from the model's type:
        #[cfg(feature = "xor")]
        static mut ARENA: [f32; xor::ARENA_FLOATS] = [0.0; xor::ARENA_FLOATS];
        // Inference: each model's scratch (two activation buffers of the
        // widest layer output), and for f32 the input image as floats. The
        // weights and the images stay in flash; int8 reads the pixels there.
        #[cfg(model_f32)]
        static mut INPUT: [f32; inference::model::INPUTS] = [0.0; inference::model::INPUTS];
        #[cfg(model_f32)]
        static mut SCRATCH_F32: [f32; inference::SCRATCH] = [0.0; inference::SCRATCH];
        #[cfg(model_int8)]
        static mut SCRATCH_I8: [i8; inference::SCRATCH_I8] = [0; inference::SCRATCH_I8];
        // Fine-tuning: the head, its gradients, Adam's state and a training
        // step's graph, sized by `nn::train_floats` at compile time.
        #[cfg(finetune)]
        static mut FINETUNE_ARENA: [f32; finetune::ARENA_FLOATS] = [0.0; finetune::ARENA_FLOATS];
        // MLPerf Tiny: the int8 model's scratch (its arena; the quantized
        // inputs are read in place from flash).
        #[cfg(feature = "mlperf")]
        static mut MLPERF_SCRATCH: [i8; mlperf::SCRATCH] = [0; mlperf::SCRATCH];

        // (Load and store, not `swap`: Cortex-M0 and riscv32imc have no
        // atomic read-modify-write; one core, and no interrupt calls `run`.)
        if STARTED.load(Ordering::Relaxed) {
            return false;
        }
        STARTED.store(true, Ordering::Relaxed);
        // SAFETY: only this function names the buffers, and the flag above
        // lets it past this point once: each `&mut` is the only reference to
        // its buffer, for the rest of the program.
        #[cfg(feature = "xor")]
        let arena = unsafe { &mut *core::ptr::addr_of_mut!(ARENA) };
        #[cfg(model_f32)]
        let (input, scratch_f32) = unsafe {
            (
                &mut *core::ptr::addr_of_mut!(INPUT),
                &mut *core::ptr::addr_of_mut!(SCRATCH_F32),
            )
        };
        #[cfg(model_int8)]
        let scratch_i8 = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH_I8) };
        #[cfg(finetune)]
        let finetune_arena = unsafe { &mut *core::ptr::addr_of_mut!(FINETUNE_ARENA) };
        #[cfg(feature = "mlperf")]
        let mlperf_scratch = unsafe { &mut *core::ptr::addr_of_mut!(MLPERF_SCRATCH) };

        // (Never changed in a build without any of the features.)
        #[allow(unused_mut)]
        let mut passed = true;

        #[cfg(feature = "xor")]
        {
            let start = clock_ticks();
            match xor::run(&mut arena[..], xor::SEED, REQUIRED_CORRECT) {
                Ok(r) => {
                    let ticks = clock_ticks() - start;
                    #[cfg(all(feature = "qemu", target_arch = "arm"))]
                    defmt::println!(
                        "{=u64} SysTick ticks, about {=u64} instructions (QEMU -icount shift=0)",
                        ticks,
                        instructions(ticks)
                    );
                    #[cfg(target_arch = "riscv32")]
                    defmt::println!(
                        "about {=u64} instructions (minstret, QEMU -icount shift=0)",
                        ticks
                    );
                    #[cfg(not(feature = "qemu"))]
                    defmt::println!("{=u64} core clock cycles", ticks);
                    defmt::println!("stack used: {=usize} bytes", stack_used());
                    summary(&r);
                    passed &= r.passed();
                }
                Err(e) => {
                    defmt::error!("training failed: {}", e);
                    passed = false;
                }
            }
        }

        #[cfg(all(any(model_f32, model_int8), not(test_rows)))]
        defmt::println!(
            "inference: {=usize} FashionMNIST test images in flash",
            inference::images()
        );
        #[cfg(all(any(model_f32, model_int8), test_rows))]
        defmt::println!(
            "inference: {=usize} held-out rows of {=usize} features in flash (a data file's model)",
            inference::rows(),
            inference::INPUTS
        );
        #[cfg(all(cortex_m0, feature = "f32-model", not(model_f32)))]
        f32_left_out();
        #[cfg(model_f32)]
        {
            repaint_stack();
            let r = inference::run_f32(input, &mut scratch_f32[..], &clock_ticks);
            passed &= model_report(r);
            #[cfg(all(model_graph, not(test_rows)))]
            super::profile::f32(
                &mut input[..],
                &mut scratch_f32[..],
                &clock_ticks,
                &NODE_COST,
            );
        }
        // Ticks per int8 inference: the yardstick of a training sample's cost.
        #[cfg(model_int8)]
        #[allow(unused_variables)]
        let int8_ticks = {
            repaint_stack();
            let r = inference::run_int8(&mut scratch_i8[..], &clock_ticks);
            let ticks = r.as_ref().map_or(0, |r| per_inference(r.ticks, r.images));
            passed &= model_report(r);
            #[cfg(all(model_graph, not(test_rows)))]
            super::profile::int8(&mut scratch_i8[..], &clock_ticks, &NODE_COST);
            ticks
        };
        #[cfg(all(target_arch = "riscv32", feature = "finetune"))]
        defmt::println!("finetune: left out of RISC-V builds (it writes the adapted model to the host through Arm semihosting); Cortex-M4F and host builds only");

        #[cfg(finetune)]
        {
            repaint_stack();
            let r = send_back(|emit| finetune::run(&mut finetune_arena[..], &clock_ticks, emit));
            match r {
                Ok(r) => {
                    finetune::summary(&r);
                    #[cfg(feature = "qemu")]
                    defmt::println!(
                        "finetune: about {=u32} instructions per training sample (features, forward, backward, update)",
                        per_inference(instructions(r.train_ticks), r.samples)
                    );
                    #[cfg(not(feature = "qemu"))]
                    defmt::println!(
                        "finetune: {=u32} core clock cycles per training sample",
                        per_inference(r.train_ticks, r.samples)
                    );
                    let stack = stack_used();
                    defmt::println!("finetune: stack used: {=usize} bytes", stack);
                    defmt::println!(
                        "finetune: flash {=usize} bytes for the whole firmware (code, the int8 model, the fine-tuning and test images)",
                        flash_used()
                    );
                    let ram = 4 * finetune::ARENA_FLOATS + stack;
                    let ram_ok = ram <= finetune::RAM_TARGET_BYTES;
                    defmt::println!(
                        "finetune: RAM {=usize} bytes (arena {=usize} + stack {=usize}); target at most {=usize}: {=str}",
                        ram,
                        4 * finetune::ARENA_FLOATS,
                        stack,
                        finetune::RAM_TARGET_BYTES,
                        if ram_ok { "ok" } else { "OVER" }
                    );
                    // A sample's cost in int8 inferences of the whole model, in hundredths.
                    let per_sample = per_inference(r.train_ticks, r.samples);
                    let hundredths = per_sample.saturating_mul(100) / int8_ticks.max(1);
                    let cost_ok = hundredths < finetune::SAMPLE_COST_TARGET_HUNDREDTHS;
                    defmt::println!(
                        "finetune: a training sample costs {=u32}.{=u32:02} int8 inferences of the whole model; target below {=u32}.{=u32:02}: {=str}",
                        hundredths / 100,
                        hundredths % 100,
                        finetune::SAMPLE_COST_TARGET_HUNDREDTHS / 100,
                        finetune::SAMPLE_COST_TARGET_HUNDREDTHS % 100,
                        if cost_ok { "ok" } else { "OVER" }
                    );
                    passed &= r.passed() && ram_ok && cost_ok;
                }
                Err(e) => {
                    defmt::error!("fine-tuning failed: {}", e);
                    passed = false;
                }
            }
        }

        #[cfg(feature = "mlperf")]
        {
            repaint_stack();
            let r = mlperf::run(&mut mlperf_scratch[..], &clock_ticks);
            passed &= mlperf_report(r);
            #[cfg(mlperf_graph)]
            mlperf::profile(&mut mlperf_scratch[..], &clock_ticks, &NODE_COST);
        }

        // A build with none of the features only starts, logs and exits (the
        // footprint of the platform part alone).
        #[cfg(not(any(feature = "xor", feature = "mlperf", model_f32, model_int8)))]
        defmt::println!("nothing to run; stack used: {=usize} bytes", stack_used());
        #[cfg(feature = "qemu")]
        defmt::println!(
            "whole run: about {=u64} instructions",
            instructions(clock_ticks())
        );
        #[cfg(not(feature = "qemu"))]
        defmt::println!("whole run: {=u64} core clock cycles", clock_ticks());

        defmt::println!("{}", if passed { "PASS" } else { "FAIL" });
        passed
    }

    /// A node's cost ([`super::profile`]): instructions under QEMU, core
    /// clock cycles on a board.
    #[cfg(all(any(all(model_graph, not(test_rows)), mlperf_graph), feature = "qemu"))]
    const NODE_COST: super::profile::Cost = super::profile::Cost {
        convert: instructions,
        unit: "instructions",
    };
    #[cfg(all(
        any(all(model_graph, not(test_rows)), mlperf_graph),
        not(feature = "qemu")
    ))]
    const NODE_COST: super::profile::Cost = super::profile::Cost {
        convert: |ticks| ticks,
        unit: "core clock cycles",
    };

    /// Logs a model's results, its cost per inference and the stack it used
    /// (painted again just before it ran); returns its verdict.
    #[cfg(any(model_f32, model_int8))]
    fn model_report(r: Option<inference::Report>) -> bool {
        let Some(r) = r else {
            return false;
        };
        inference::summary(&r);
        #[cfg(all(feature = "qemu", target_arch = "arm"))]
        defmt::println!(
            "{}: {=u64} SysTick ticks for {=usize} inferences, about {=u32} instructions per inference; Model::load (validation, CRC) about {=u64} instructions",
            r.name,
            r.ticks,
            r.images,
            per_inference(instructions(r.ticks), r.images),
            instructions(r.load_ticks)
        );
        #[cfg(target_arch = "riscv32")]
        defmt::println!(
            "{}: {=u64} instructions (minstret) for {=usize} inferences, about {=u32} instructions per inference; Model::load (validation, CRC) about {=u64} instructions",
            r.name,
            r.ticks,
            r.images,
            per_inference(r.ticks, r.images),
            r.load_ticks
        );
        #[cfg(not(feature = "qemu"))]
        defmt::println!(
            "{}: {=u32} core clock cycles per inference; Model::load {=u64} cycles",
            r.name,
            per_inference(r.ticks, r.images),
            r.load_ticks
        );
        defmt::println!("{}: stack used: {=usize} bytes", r.name, stack_used());
        // A graph's memory: its scratch (sized from the file's header at
        // compile time) and the stack, and the whole firmware's flash.
        #[cfg(all(model_graph, target_arch = "arm"))]
        {
            let scratch = if r.name == "int8" {
                inference::SCRATCH_I8
            } else {
                4 * (inference::SCRATCH + inference::PIXELS)
            };
            defmt::println!(
                "{}: RAM {=usize} bytes for inference (scratch and input {=usize} + stack {=usize}); flash {=usize} bytes for the whole firmware (code, the models, the test images)",
                r.name,
                scratch + stack_used(),
                scratch,
                stack_used(),
                flash_used()
            );
        }
        r.passed()
    }

    /// Logs an MLPerf Tiny run: its verdict, the instructions (QEMU) or
    /// cycles (a board) per inference and per multiply-add, then the RAM
    /// (`.bss` and `.data`, which hold the scratch, and the stack, painted
    /// again just before the run; the inputs are read in place from flash)
    /// and the flash; returns the verdict.
    #[cfg(feature = "mlperf")]
    fn mlperf_report(r: Option<mlperf::Report>) -> bool {
        let Some(r) = r else {
            return false;
        };
        let stack = stack_used();
        #[cfg(feature = "qemu")]
        let (per, unit) = (
            instructions(r.ticks) / r.inputs.max(1) as u64,
            "instructions",
        );
        #[cfg(not(feature = "qemu"))]
        let (per, unit) = (r.ticks / r.inputs.max(1) as u64, "core clock cycles");
        let hundredths = per * 100 / mlperf::MACS.max(1) as u64;
        defmt::println!(
            "mlperf-{=str}: {=usize} of {=usize} inputs' int8 outputs match the host's byte for byte; {=usize} multiply-adds, {=u64}.{=u64:02} {=str} each; about {=u64} {=str} per inference",
            mlperf::NAME,
            r.matches,
            mlperf::inputs(),
            mlperf::MACS,
            hundredths / 100,
            hundredths % 100,
            unit,
            per,
            unit
        );
        #[cfg(feature = "qemu")]
        let load = instructions(r.load_ticks);
        #[cfg(not(feature = "qemu"))]
        let load = r.load_ticks;
        defmt::println!(
            "mlperf-{=str}: the file's parse (header, CRC), once: about {=u64} {=str}",
            mlperf::NAME,
            load,
            unit
        );
        let statics = static_ram();
        defmt::println!(
            "mlperf-{=str}: RAM {=usize} bytes (.bss and .data {=usize}, of which scratch {=usize}; stack {=usize}; the {=usize}-byte inputs read in place from flash); flash {=usize} bytes (the model {=usize}; the whole firmware with its test data)",
            mlperf::NAME,
            statics + stack,
            statics,
            mlperf::SCRATCH,
            stack,
            mlperf::INPUTS,
            flash_used(),
            mlperf::MODEL.0.len()
        );
        r.passed()
    }

    /// Runs `f` with the destination of the adapted model. Under QEMU: a
    /// host file through semihosting, written whole under a temporary name
    /// and renamed (removed if anything failed). On a board: nothing is sent
    /// (its size and CRC are logged; firmware-example/README.md says how a
    /// board would send it over RTT or keep it in a flash page).
    #[cfg(finetune)]
    fn send_back<R>(
        f: impl FnOnce(
            &mut dyn FnMut(&[u8]) -> Result<(), FormatError>,
        ) -> Result<R, finetune::FinetuneError>,
    ) -> Result<R, finetune::FinetuneError> {
        #[cfg(feature = "qemu")]
        {
            use super::host_file::{self, HostFile};
            const PATH: &str = env!("EMBER_FINETUNED_PATH");
            let path = concat!(env!("EMBER_FINETUNED_PATH"), "\0").as_bytes();
            let tmp = concat!(env!("EMBER_FINETUNED_PATH"), ".tmp\0").as_bytes();
            let refused = finetune::FinetuneError::Write(FormatError::Output);
            let Some(mut file) = HostFile::create(tmp) else {
                defmt::error!("finetune: cannot create {=str}.tmp on the host", PATH);
                return Err(refused);
            };
            let r = f(&mut |bytes| {
                if file.write_all(bytes) {
                    Ok(())
                } else {
                    Err(FormatError::Output)
                }
            });
            let closed = file.close();
            if r.is_ok() && closed && host_file::rename(tmp, path) {
                defmt::println!(
                    "finetune: adapted model written to {=str} (semihosting)",
                    PATH
                );
                return r;
            }
            host_file::remove(tmp);
            r.and(Err(refused))
        }
        #[cfg(not(feature = "qemu"))]
        f(&mut |_| Ok(()))
    }

    /// `total / images` in 32 bits (saturating): a 64-bit division would link
    /// about 1 KB of library code, and one inference is far below 2^32.
    /// Except on RISC-V, whose clock counts instructions rather than ticks:
    /// there the f32 model's soft-float run over all the images can pass
    /// 2^32, so the division is done in 64 bits.
    /// A graph (a CNN with the reference kernels) takes tens of millions of
    /// instructions per inference: the total over the images can pass 2^32
    /// too, and is divided in 64 bits as well.
    #[cfg(any(model_f32, model_int8, finetune))]
    fn per_inference(total: u64, images: usize) -> u32 {
        if cfg!(any(target_arch = "riscv32", model_graph)) {
            u32::try_from(total / images.max(1) as u64).unwrap_or(u32::MAX)
        } else {
            u32::try_from(total).unwrap_or(u32::MAX) / (images.max(1) as u32)
        }
    }

    static PANICKED: AtomicBool = AtomicBool::new(false);

    /// Whether this is the first panic or fault: only the first one is
    /// logged, so that one inside the logger does not recurse. (Load and
    /// store, not `swap`: Cortex-M0 and riscv32imc have no atomic
    /// read-modify-write.)
    pub fn first_fault() -> bool {
        let first = !PANICKED.load(Ordering::Relaxed);
        PANICKED.store(true, Ordering::Relaxed);
        first
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        if first_fault() {
            // The location only: formatting the message would link
            // `core::fmt` (about 2.7 KB of flash) into every build.
            match info.location() {
                Some(l) => defmt::error!("panic at {=str}:{=u32}", l.file(), l.line()),
                None => defmt::error!("panic"),
            }
        }
        exit(false)
    }

    // What the run needs of its core and machine: the entry point, which
    // calls `run` and exits with its verdict, the clock, the stack
    // measurement, the exit, the fault handlers and (RISC-V) the defmt
    // transport. Included into this module rather than made modules of their
    // own: rustc splits a crate into codegen units by module, and LLVM
    // inlines within a unit, so a module of their own moves the code around
    // and changes what gets inlined; the Cortex-M builds' instruction counts
    // stay what they were with everything here.
    #[cfg(target_arch = "arm")]
    include!("platform/cortex_m.rs");
    #[cfg(target_arch = "riscv32")]
    include!("platform/riscv.rs");
}
