#ifndef BENCH_H
#define BENCH_H
#include <stdint.h>
void bench_puts(const char *s);
void bench_exit(int ok);
uint64_t bench_ticks(void);
/* Instructions in `ticks` SysTick ticks under -icount shift=0 on mps2-an386:
   Ember's conversion (ticks * 80 / 2). */
static inline uint64_t bench_instructions(uint64_t ticks) { return ticks * 80 / 2; }
#endif
