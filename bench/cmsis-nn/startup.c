/* Bare-metal start for QEMU's mps2-an386: the vector table, the reset
   handler (zeroes .bss, enables the FPU, calls main, exits through
   semihosting), SysTick as a 24-bit counter extended by its wraps, and
   semihosting output. Counting as Ember's firmware does
   (firmware-example/src/platform/cortex_m.rs): SysTick on the core clock
   (mps2's 25 MHz, a tick every 40 ns of virtual time), and under QEMU's
   `-icount shift=0` one instruction per nanosecond: 40 instructions per tick. */
#include <stdint.h>
#include "bench.h"

extern uint32_t _sbss, _ebss, _stack_top;
int main(void);

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define RELOAD 0x00FFFFFFu

static volatile uint32_t wraps;

static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void bench_puts(const char *s) { semihost(0x04, s); /* SYS_WRITE0 */ }

void bench_exit(int ok) {
    /* SYS_EXIT: ADP_Stopped_ApplicationExit (QEMU exits 0) or
       ADP_Stopped_RunTimeErrorUnknown (QEMU exits 1). */
    semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026u : 0x20023u));
    for (;;) {
    }
}

void bench_clock_start(void) {
    SYST_RVR = RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 0x7; /* core clock, interrupt, enable */
}

uint64_t bench_ticks(void) {
    const uint64_t period = (uint64_t)RELOAD + 1;
    for (;;) {
        uint32_t w = wraps;
        uint32_t cur = SYST_CVR;
        if (wraps == w) {
            return (uint64_t)w * period + (period - cur) % period;
        }
    }
}

static void systick_handler(void) { wraps = wraps + 1; }

void reset_handler(void) {
    for (uint32_t *p = &_sbss; p < &_ebss; p++) {
        *p = 0;
    }
    CPACR |= 0xFu << 20; /* CP10, CP11: full access (the FPU) */
    __asm__ volatile("dsb\n isb" ::: "memory");
    bench_clock_start();
    bench_exit(main() == 0);
}

static void fault_handler(void) {
    bench_puts("fault\n");
    bench_exit(0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_stack_top),
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,
    fault_handler, /* SVCall */
    0, 0,
    fault_handler, /* PendSV */
    systick_handler,
};
