// Cortex-M: what the firmware needs of the core and of its machine (QEMU's
// `mps2-an386` and `microbit`, feature `qemu`; an STM32F411 board, feature
// `stm32f411`). `cortex-m-rt` starts it, SysTick times it, `cortex-m-rt`'s
// `paint-stack` measures its stack, and it ends through semihosting (QEMU)
// or a breakpoint (probe-rs). The run itself is `run`.
//
// Included into the module `firmware` (main.rs), whose imports it shares.

use core::sync::atomic::AtomicU32;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{Peripherals, SYST};
use cortex_m_rt::{entry, exception, ExceptionFrame, STACK_PAINT_VALUE};

// The defmt transport.
#[cfg(feature = "stm32f411")]
use defmt_rtt as _;
#[cfg(feature = "qemu")]
use defmt_semihosting as _;

#[entry]
fn main() -> ! {
    if let Some(cp) = Peripherals::take() {
        start_clock(cp.SYST);
    }
    exit(run())
}

/// Bytes of flash the firmware occupies: from the vector table to the end
/// of `.rodata` (alignment gaps included), and the initial values of
/// `.data`.
#[cfg(any(finetune, model_graph, feature = "mlperf"))]
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

/// Bytes of RAM in `.bss` and `.data` (the statics: buffers, the
/// logger's state), from `cortex-m-rt`'s linker symbols.
#[cfg(feature = "mlperf")]
fn static_ram() -> usize {
    extern "C" {
        static __sbss: u32;
        static __ebss: u32;
        static __sdata: u32;
        static __edata: u32;
    }
    // Only the symbols' addresses are taken.
    let (bss, ebss, data, edata) = (
        core::ptr::addr_of!(__sbss) as usize,
        core::ptr::addr_of!(__ebss) as usize,
        core::ptr::addr_of!(__sdata) as usize,
        core::ptr::addr_of!(__edata) as usize,
    );
    (ebss - bss) + (edata - data)
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
/// 16 MHz (62.5 ns) or mps2's 25 MHz (40 ns; also a Cortex-M0 build run on
/// mps2-an385, cfg `mps2_m0`).
#[cfg(feature = "qemu")]
const QEMU_INSTRUCTIONS_PER_2_TICKS: u64 = if cfg!(all(cortex_m0, not(mps2_m0))) {
    125
} else {
    80
};

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
            return u64::from(wraps) * u64::from(PERIOD) + u64::from((PERIOD - current) % PERIOD);
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
#[cfg(any(model_f32, model_int8, finetune, feature = "mlperf"))]
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

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    if first_fault() {
        defmt::error!("HardFault at pc {=u32:#010x}", frame.pc());
    }
    exit(false)
}
