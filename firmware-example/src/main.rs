//! Ember on a microcontroller, with no allocator: a small MLP learns XOR on
//! the device (training), and a FashionMNIST classifier trained on the host
//! runs from flash, in f32 and in int8 (inference).
//!
//! Built for a bare-metal target (`target_os = "none"`) this is firmware:
//! `cortex-m-rt` starts it, defmt logs over semihosting (feature `qemu`, the
//! default, for QEMU's `mps2-an386` and `microbit`) or RTT (feature
//! `stm32f411`, for a real board), and the run ends with a pass/fail exit
//! status. Built for the host it is an ordinary program running the same
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
#[cfg(any(model_f32, model_int8))]
mod inference;
#[cfg(feature = "xor")]
mod xor;

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

/// Says why a Cortex-M0 build has no f32 model.
#[cfg(all(cortex_m0, feature = "f32-model"))]
fn f32_left_out() {
    say!("f32 model: left out of Cortex-M0 builds (its 437732 bytes do not fit the micro:bit's 256 KiB of flash); int8 only");
}

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
            let mut input = [0.0f32; inference::PIXELS];
            let mut scratch = vec![0.0f32; inference::SCRATCH];
            passed &= timed(inference::run_f32(&mut input, &mut scratch, &clock));
        }
        #[cfg(model_int8)]
        {
            let mut scratch = vec![0i8; inference::SCRATCH];
            passed &= timed(inference::run_int8(&mut scratch, &clock));
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

#[cfg(target_os = "none")]
mod firmware {
    #[cfg(all(cortex_m0, feature = "f32-model"))]
    use super::f32_left_out;
    #[cfg(finetune)]
    use super::finetune;
    #[cfg(any(model_f32, model_int8))]
    use super::inference;
    #[cfg(feature = "xor")]
    use super::{summary, xor, REQUIRED_CORRECT};
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::{Peripherals, SYST};
    use cortex_m_rt::{entry, exception, ExceptionFrame, STACK_PAINT_VALUE};
    #[cfg(finetune)]
    use ember_nn_core::deploy::FormatError;

    #[cfg(all(feature = "qemu", feature = "stm32f411"))]
    compile_error!("enable one of the features `qemu` (default) and `stm32f411`, not both");
    #[cfg(not(any(feature = "qemu", feature = "stm32f411")))]
    compile_error!("enable one of the features `qemu` (default) and `stm32f411`");

    // The defmt transport.
    #[cfg(feature = "stm32f411")]
    use defmt_rtt as _;
    #[cfg(feature = "qemu")]
    use defmt_semihosting as _;

    #[entry]
    fn main() -> ! {
        // Everything lives in .bss. (`#[entry]` turns a `static mut` declared
        // at the top of the function into a safe `&'static mut`, taken once.)
        // The XOR model, its gradients, Adam's state and every graph, sized by
        // `nn::train_floats` from the model's type:
        #[cfg(feature = "xor")]
        static mut ARENA: [f32; xor::ARENA_FLOATS] = [0.0; xor::ARENA_FLOATS];
        // Inference: each model's scratch (two activation buffers of the
        // widest layer output), and for f32 the input image as floats. The
        // weights and the images stay in flash; int8 reads the pixels there.
        #[cfg(model_f32)]
        static mut INPUT: [f32; inference::PIXELS] = [0.0; inference::PIXELS];
        #[cfg(model_f32)]
        static mut SCRATCH_F32: [f32; inference::SCRATCH] = [0.0; inference::SCRATCH];
        #[cfg(model_int8)]
        static mut SCRATCH_I8: [i8; inference::SCRATCH] = [0; inference::SCRATCH];
        // Fine-tuning: the head, its gradients, Adam's state and a training
        // step's graph, sized by `nn::train_floats` at compile time.
        #[cfg(finetune)]
        static mut FINETUNE_ARENA: [f32; finetune::ARENA_FLOATS] = [0.0; finetune::ARENA_FLOATS];

        if let Some(cp) = Peripherals::take() {
            start_clock(cp.SYST);
        }
        // (Never changed in a build without any of the features.)
        #[allow(unused_mut)]
        let mut passed = true;

        #[cfg(feature = "xor")]
        {
            let start = clock_ticks();
            match xor::run(&mut ARENA[..], xor::SEED, REQUIRED_CORRECT) {
                Ok(r) => {
                    let ticks = clock_ticks() - start;
                    #[cfg(feature = "qemu")]
                    defmt::println!(
                        "{=u64} SysTick ticks, about {=u64} instructions (QEMU -icount shift=0)",
                        ticks,
                        instructions(ticks)
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

        #[cfg(any(model_f32, model_int8))]
        defmt::println!(
            "inference: {=usize} FashionMNIST test images in flash",
            inference::images()
        );
        #[cfg(all(cortex_m0, feature = "f32-model"))]
        f32_left_out();
        #[cfg(model_f32)]
        {
            repaint_stack();
            let r = inference::run_f32(&mut *INPUT, &mut SCRATCH_F32[..], &clock_ticks);
            passed &= model_report(r);
        }
        // Ticks per int8 inference: the yardstick of a training sample's cost.
        #[cfg(model_int8)]
        #[allow(unused_variables)]
        let int8_ticks = {
            repaint_stack();
            let r = inference::run_int8(&mut SCRATCH_I8[..], &clock_ticks);
            let ticks = r.as_ref().map_or(0, |r| per_inference(r.ticks, r.images));
            passed &= model_report(r);
            ticks
        };

        #[cfg(finetune)]
        {
            repaint_stack();
            let r = send_back(|emit| finetune::run(&mut FINETUNE_ARENA[..], &clock_ticks, emit));
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
                    defmt::error!("fine-tuning failed: {}", defmt::Display2Format(&e));
                    passed = false;
                }
            }
        }

        // A build with none of the features only starts, logs and exits (the
        // footprint of the platform part alone).
        #[cfg(not(any(feature = "xor", model_f32, model_int8)))]
        defmt::println!("nothing to run; stack used: {=usize} bytes", stack_used());
        #[cfg(feature = "qemu")]
        defmt::println!(
            "whole run: about {=u64} instructions",
            instructions(clock_ticks())
        );
        #[cfg(not(feature = "qemu"))]
        defmt::println!("whole run: {=u64} core clock cycles", clock_ticks());

        defmt::println!("{}", if passed { "PASS" } else { "FAIL" });
        exit(passed)
    }

    /// Logs a model's results, its cost per inference and the stack it used
    /// (painted again just before it ran); returns its verdict.
    #[cfg(any(model_f32, model_int8))]
    fn model_report(r: Option<inference::Report>) -> bool {
        let Some(r) = r else {
            return false;
        };
        inference::summary(&r);
        #[cfg(feature = "qemu")]
        defmt::println!(
            "{}: {=u64} SysTick ticks for {=usize} inferences, about {=u32} instructions per inference; Model::load (validation, CRC) about {=u64} instructions",
            r.name,
            r.ticks,
            r.images,
            per_inference(instructions(r.ticks), r.images),
            instructions(r.load_ticks)
        );
        #[cfg(not(feature = "qemu"))]
        defmt::println!(
            "{}: {=u32} core clock cycles per inference; Model::load {=u64} cycles",
            r.name,
            per_inference(r.ticks, r.images),
            r.load_ticks
        );
        defmt::println!("{}: stack used: {=usize} bytes", r.name, stack_used());
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

    /// Bytes of flash the firmware occupies: from the vector table to the end
    /// of `.rodata` (alignment gaps included), and the initial values of
    /// `.data`.
    #[cfg(finetune)]
    fn flash_used() -> usize {
        extern "C" {
            static __vector_table: u32;
            static __erodata: u32;
            static __sdata: u32;
            static __edata: u32;
        }
        // Only the addresses of cortex-m-rt's linker symbols are taken
        // (`addr_of!` of an extern static is safe: nothing is read).
        let (start, end, data_start, data_end) = (
            core::ptr::addr_of!(__vector_table) as usize,
            core::ptr::addr_of!(__erodata) as usize,
            core::ptr::addr_of!(__sdata) as usize,
            core::ptr::addr_of!(__edata) as usize,
        );
        (end - start) + (data_end - data_start)
    }

    /// `total / images` in 32 bits (saturating): a 64-bit division would link
    /// about 1 KB of library code, and one inference is far below 2^32.
    #[cfg(any(model_f32, model_int8, finetune))]
    fn per_inference(total: u64, images: usize) -> u32 {
        u32::try_from(total).unwrap_or(u32::MAX) / (images.max(1) as u32)
    }

    /// Instructions executed in `ticks` SysTick ticks under QEMU's `-icount
    /// shift=0` (rounded down; the division by 2 is a shift).
    #[cfg(feature = "qemu")]
    fn instructions(ticks: u64) -> u64 {
        ticks * QEMU_INSTRUCTIONS_PER_2_TICKS / 2
    }

    /// Ends the run with a verdict. Under QEMU: a semihosting exit, which makes
    /// QEMU exit with status 0 or 1. On a board run by `probe-rs run`: a
    /// breakpoint (success) or an undefined instruction, whose HardFault
    /// probe-rs catches and reports as a failure (as `panic-probe` does).
    fn exit(passed: bool) -> ! {
        #[cfg(feature = "qemu")]
        {
            use cortex_m_semihosting::debug;
            debug::exit(if passed {
                debug::EXIT_SUCCESS
            } else {
                debug::EXIT_FAILURE
            });
        }
        #[cfg(feature = "stm32f411")]
        {
            if passed {
                cortex_m::asm::bkpt();
            } else {
                cortex_m::asm::udf();
            }
        }
        loop {
            cortex_m::asm::wfi();
        }
    }

    /// Times the run with SysTick on the core clock (Cortex-M0 has no DWT
    /// cycle counter, and QEMU does not emulate it). On a board a tick is a
    /// cycle. Under QEMU a tick is a period of the machine's clock in virtual
    /// time, which `-icount shift=0` makes one nanosecond per instruction.
    fn start_clock(mut syst: SYST) {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    const RELOAD: u32 = 0x00ff_ffff;

    /// Instructions per two SysTick ticks in QEMU with `-icount shift=0` (one
    /// instruction per nanosecond): a tick is a period of the micro:bit's
    /// 16 MHz (62.5 ns) or mps2's 25 MHz (40 ns).
    #[cfg(feature = "qemu")]
    const QEMU_INSTRUCTIONS_PER_2_TICKS: u64 = if cfg!(cortex_m0) { 125 } else { 80 };

    /// Times SysTick wrapped (it counts down from `RELOAD`).
    static WRAPS: AtomicU32 = AtomicU32::new(0);

    #[exception]
    fn SysTick() {
        WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Core clock ticks since `start_clock`. The counter starts at 0, reloads
    /// to `RELOAD` and counts down; reaching 0 again ends a period of
    /// `RELOAD + 1` ticks and raises the exception that counts it.
    fn clock_ticks() -> u64 {
        const PERIOD: u32 = RELOAD + 1;
        loop {
            let wraps = WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            if WRAPS.load(Ordering::Relaxed) == wraps {
                return u64::from(wraps) * u64::from(PERIOD)
                    + u64::from((PERIOD - current) % PERIOD);
            }
        }
    }

    /// Deepest the stack has been, in bytes: `cortex-m-rt` (feature
    /// `paint-stack`) fills it with `STACK_PAINT_VALUE` before `main`, and
    /// the lowest word that differs is as far as it reached.
    fn stack_used() -> usize {
        extern "C" {
            static _stack_start: u32;
            static _stack_end: u32;
        }
        // Linker symbols: only their addresses mean something.
        let top = (&raw const _stack_start) as usize;
        let bottom = (&raw const _stack_end) as usize;
        let mut p = bottom;
        // SAFETY: every word in [_stack_end, _stack_start) is RAM reserved for
        // the stack; the words read below the stack pointer belong to no one.
        while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == STACK_PAINT_VALUE {
            p += 4;
        }
        top - p
    }

    /// Paints the free part of the stack (below the stack pointer) again, so
    /// that the next [`stack_used`] measures only the deepest point reached
    /// after this call.
    #[cfg(any(model_f32, model_int8, finetune))]
    fn repaint_stack() {
        extern "C" {
            static _stack_end: u32;
        }
        let bottom = (&raw const _stack_end) as usize;
        let sp = cortex_m::register::msp::read() as usize;
        let mut p = bottom;
        while p < sp {
            // SAFETY: [_stack_end, sp) is the free part of the stack: RAM
            // reserved for it that no live frame occupies. An exception taken
            // meanwhile pushes its frame below `sp` and pops it before we
            // continue, so nothing there is live when it is overwritten.
            unsafe { core::ptr::write_volatile(p as *mut u32, STACK_PAINT_VALUE) };
            p += 4;
        }
    }

    static PANICKED: AtomicBool = AtomicBool::new(false);

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        // A panic inside the logger must not recurse: log only the first one.
        // (Load and store, not `swap`: Cortex-M0 has no atomic read-modify-write.)
        if !PANICKED.load(Ordering::Relaxed) {
            PANICKED.store(true, Ordering::Relaxed);
            // The location only: formatting the message would link
            // `core::fmt` (about 2.7 KB of flash) into every build.
            match info.location() {
                Some(l) => defmt::error!("panic at {=str}:{=u32}", l.file(), l.line()),
                None => defmt::error!("panic"),
            }
        }
        exit(false)
    }

    #[exception]
    unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
        if !PANICKED.load(Ordering::Relaxed) {
            PANICKED.store(true, Ordering::Relaxed);
            defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
        }
        exit(false)
    }
}
