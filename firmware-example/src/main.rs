//! Ember on a microcontroller: a small MLP learns XOR on a Cortex-M4F with no
//! allocator, all tensors in one static arena of `f32`s.
//!
//! Built for a bare-metal target (`target_os = "none"`) this is firmware:
//! `cortex-m-rt` starts it, defmt logs over semihosting (feature `qemu`, the
//! default, for QEMU's `mps2-an386`) or RTT (feature `stm32f411`, for a real
//! board), and the run ends with a pass/fail exit status. Built for the host
//! it is an ordinary program running the same training code, which keeps it
//! under the workspace's host lints and tests. See `README.md`.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

/// Logs a line: defmt on the microcontroller, `println!` on the host. Format
/// strings use only `{}`, which both understand.
#[cfg(target_os = "none")]
macro_rules! say {
    ($($arg:tt)*) => { defmt::println!($($arg)*) };
}
#[cfg(not(target_os = "none"))]
macro_rules! say {
    ($($arg:tt)*) => { std::println!($($arg)*) };
}

mod xor;

/// Points that must be classified correctly for the run to pass.
const REQUIRED_CORRECT: usize = 4;

fn summary(r: &xor::Report) {
    say!(
        "loss {} -> {}, {} of 4 points right ({} required)",
        r.first_loss,
        r.final_loss,
        r.correct,
        r.required
    );
    say!(
        "arena floats: {} persistent, {} for a forward pass of {} of {} nodes",
        r.persistent_floats,
        r.graph_floats,
        r.graph_nodes,
        xor::NODES
    );
    say!("{}", if r.passed() { "PASS" } else { "FAIL" });
}

#[cfg(not(target_os = "none"))]
fn main() {
    let mut arena = [0.0f32; xor::ARENA_FLOATS];
    match xor::run(&mut arena, xor::SEED, REQUIRED_CORRECT) {
        Ok(r) => {
            summary(&r);
            if !r.passed() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(target_os = "none")]
mod firmware {
    use super::{summary, xor, REQUIRED_CORRECT};
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::{Peripherals, SYST};
    use cortex_m_rt::{entry, exception, ExceptionFrame, STACK_PAINT_VALUE};

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
        // The whole model, its gradients, Adam's state and every graph live
        // here, in .bss. (`#[entry]` turns a `static mut` declared at the top
        // of the function into a safe `&'static mut`, taken once.)
        static mut ARENA: [f32; xor::ARENA_FLOATS] = [0.0; xor::ARENA_FLOATS];
        let arena: &'static mut [f32; xor::ARENA_FLOATS] = ARENA;

        if let Some(cp) = Peripherals::take() {
            start_clock(cp.SYST);
        }

        match xor::run(&mut arena[..], xor::SEED, REQUIRED_CORRECT) {
            Ok(r) => {
                let ticks = clock_ticks();
                #[cfg(feature = "qemu")]
                defmt::println!(
                    "{=u64} SysTick ticks, about {=u64} instructions (QEMU -icount shift=0)",
                    ticks,
                    ticks * QEMU_PS_PER_TICK / 1000
                );
                #[cfg(not(feature = "qemu"))]
                defmt::println!("{=u64} core clock cycles", ticks);
                defmt::println!("stack used: {=usize} bytes", stack_used());
                summary(&r);
                exit(r.passed())
            }
            Err(e) => {
                defmt::error!("training failed: {}", e);
                exit(false)
            }
        }
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

    /// Picoseconds per SysTick tick in QEMU: micro:bit's 16 MHz, mps2's 25 MHz.
    #[cfg(feature = "qemu")]
    const QEMU_PS_PER_TICK: u64 = if cfg!(cortex_m0) { 62_500 } else { 40_000 };

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

    static PANICKED: AtomicBool = AtomicBool::new(false);

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        // A panic inside the logger must not recurse: log only the first one.
        // (Load and store, not `swap`: Cortex-M0 has no atomic read-modify-write.)
        if !PANICKED.load(Ordering::Relaxed) {
            PANICKED.store(true, Ordering::Relaxed);
            defmt::error!("panic: {}", defmt::Display2Format(info));
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
