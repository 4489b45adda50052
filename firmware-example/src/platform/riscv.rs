// RISC-V (`riscv32imc-unknown-none-elf`, the ESP32-C3 class) on QEMU's
// `virt` machine (`boards/riscv-virt/memory.x`): what the firmware needs
// of the core and of the machine. `riscv-rt` starts it in machine mode,
// defmt frames go out through the 16550 UART at `0x1000_0000` (QEMU puts
// them on its stdout for `defmt-print`), the `minstret` CSR counts
// instructions, the stack is painted here (`riscv-rt` does not), and the
// run ends through the SiFive test device at `0x10_0000`, which makes QEMU
// exit with the verdict. The run itself is `run`.
//
// Included into the module `firmware` (main.rs), whose imports it shares.
//
// Interrupts stay disabled for the whole run (`riscv-rt` clears `mie` and
// nothing sets it): nothing here is shared with a handler.

use riscv::register::{mcause, mepc, minstret, minstreth};

#[cfg(feature = "stm32f411")]
compile_error!("the feature `stm32f411` is a Cortex-M board; RISC-V builds run on QEMU's virt (feature `qemu`)");

#[riscv_rt::entry]
fn main() -> ! {
    paint_stack();
    start_clock();
    exit(run())
}

/// Starts the count of [`clock_ticks`] at 0, as `main` begins (SysTick's on
/// Cortex-M starts there too). From reset `minstret` would also count QEMU's
/// virtual time before the first instruction, which varies from run to run.
fn start_clock() {
    // SAFETY: machine mode may write the counter; nothing else reads it yet.
    // The low half first, so that it cannot carry into the high half between
    // the two writes.
    unsafe {
        minstret::write(0);
        minstreth::write(0);
    }
}

/// Instructions executed in `ticks` of [`clock_ticks`]: the same number.
fn instructions(ticks: u64) -> u64 {
    ticks
}

/// Instructions retired since [`start_clock`]: the `minstret` CSR (with
/// `minstreth`, read until the high half is stable). Under `-icount` QEMU derives it
/// from its instruction counter, and a CSR read is an I/O instruction there
/// (it ends its translation block), so the count is exact. Checked with
/// QEMU 7.2 (Debian's qemu-system-misc) and `-icount shift=0`: `minstret`
/// read around a block of 1000 `nop`s differs by exactly 1001 (the nops
/// and one of the two reads), as does `mcycle`, and around a loop of 1000
/// iterations of 4 instructions by 4002. The CLINT's `mtime` at the virt's
/// 10 MHz is virtual time instead, 100 ns per tick, that is 100
/// instructions under shift=0 (1000 ticks over 100,000 `nop`s): exact too,
/// but only in hundreds.
fn clock_ticks() -> u64 {
    minstret::read64()
}

/// Ends the run with a verdict through the virt machine's SiFive test
/// device ("finisher"): `0x5555` makes QEMU exit with status 0,
/// `(1 << 16) | 0x3333` with status 1.
fn exit(passed: bool) -> ! {
    const FINISHER: *mut u32 = 0x10_0000 as *mut u32;
    let code = if passed { 0x5555 } else { (1 << 16) | 0x3333 };
    // SAFETY: the virt machine maps the SiFive test device at 0x10_0000; a
    // word written there ends the emulation.
    unsafe { core::ptr::write_volatile(FINISHER, code) };
    loop {
        riscv::asm::wfi();
    }
}

/// The virt machine's 16550 UART: transmit holding register at +0, line
/// status register at +5 (bit 5: ready for a byte).
const UART: usize = 0x1000_0000;

/// Sends bytes through the UART, waiting for it to take each one.
fn uart_write(bytes: &[u8]) {
    const THR: *mut u8 = UART as *mut u8;
    const LSR: *const u8 = (UART + 5) as *const u8;
    for &b in bytes {
        // SAFETY: the virt machine maps a 16550 at `UART`; reading its line
        // status and writing its transmit register have no other effect.
        unsafe {
            while core::ptr::read_volatile(LSR) & 0x20 == 0 {}
            core::ptr::write_volatile(THR, b);
        }
    }
}

/// defmt's logger: frames encoded by defmt (rzCOBS) and sent through the UART.
#[defmt::global_logger]
struct UartLogger;

/// A frame is being written.
static TAKEN: AtomicBool = AtomicBool::new(false);
/// defmt's frame encoder; used only between `acquire` and `release`.
static mut ENCODER: defmt::Encoder = defmt::Encoder::new();

// SAFETY: `acquire` admits one frame at a time (`TAKEN`; no interrupts, one
// hart), and the encoder is touched only inside a frame.
unsafe impl defmt::Logger for UartLogger {
    fn acquire() {
        // Only a panic while logging can get here with a frame open; the
        // panic handler then logs nothing more (`first_fault`).
        if TAKEN.load(Ordering::Relaxed) {
            panic!("defmt logger taken reentrantly");
        }
        TAKEN.store(true, Ordering::Relaxed);
        // SAFETY: the frame is ours (`TAKEN`), so is the encoder.
        unsafe { (*core::ptr::addr_of_mut!(ENCODER)).start_frame(uart_write) }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called after `acquire`, inside our frame.
        unsafe { (*core::ptr::addr_of_mut!(ENCODER)).end_frame(uart_write) };
        TAKEN.store(false, Ordering::Relaxed);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between `acquire` and `release`, inside our frame.
        unsafe { (*core::ptr::addr_of_mut!(ENCODER)).write(bytes, uart_write) }
    }
}

/// Fills a stack word that no frame has reached (`cortex-m-rt`'s value).
const STACK_PAINT_VALUE: u32 = 0xcccc_cccc;

extern "C" {
    /// Top of the stack (`riscv-rt`'s linker script).
    static _stack_start: u32;
    /// Bottom of the stack region: the end of `.bss` and the (empty) heap
    /// (`riscv-rt`'s linker script).
    static __estack: u32;
}

/// The stack pointer.
fn sp() -> usize {
    let sp: usize;
    // SAFETY: reads a register, touches no memory.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Paints the free part of the stack (below the stack pointer), so that the
/// next [`stack_used`] measures the deepest point reached after this call.
/// `main` calls it first (what `cortex-m-rt`'s `paint-stack` does before
/// `main` on Cortex-M; `riscv-rt` has no such option).
fn paint_stack() {
    // Linker symbols: only their addresses mean something.
    let bottom = (&raw const __estack) as usize;
    let mut p = bottom;
    let sp = sp();
    while p < sp {
        // SAFETY: [__estack, sp) is the free part of the stack: RAM reserved
        // for it that no live frame occupies (no interrupts run).
        unsafe { core::ptr::write_volatile(p as *mut u32, STACK_PAINT_VALUE) };
        p += 4;
    }
}

/// Paints the free part of the stack again (see [`paint_stack`]).
#[cfg(any(model_f32, model_int8))]
fn repaint_stack() {
    paint_stack();
}

/// Deepest the stack has been since it was last painted, in bytes: the
/// lowest word that no longer holds the paint is as far as it reached.
fn stack_used() -> usize {
    let top = (&raw const _stack_start) as usize;
    let bottom = (&raw const __estack) as usize;
    let mut p = bottom;
    // SAFETY: every word in [__estack, _stack_start) is RAM reserved for the
    // stack; the words read below the stack pointer belong to no one.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == STACK_PAINT_VALUE {
        p += 4;
    }
    top - p
}

/// An exception (an illegal instruction, a misaligned or faulting access):
/// logged with its cause and address, and the run fails.
#[export_name = "ExceptionHandler"]
fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
    if first_fault() {
        defmt::error!(
            "exception: mcause {=usize:#x} at pc {=usize:#010x}",
            mcause::read().bits(),
            mepc::read()
        );
    }
    exit(false)
}
