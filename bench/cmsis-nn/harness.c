/* CMSIS-NN's int8 kernels on the layers of Ember's comparison, one call at a
   time, counted in instructions under QEMU (startup.c). Each layer runs
   twice and the second (warm) call is counted. Inputs, weights and biases
   are pseudo-random, the requantization per-channel multipliers in
   [2^30, 2^31) with right shifts of 7 to 10 (a realistic spread): the
   kernels' instruction counts do not depend on the values (no data-dependent
   branches but the final clamp, a select).

   One line per layer (scripts/cmsis-nn-layers.sh parses them):
     cmsis-nn | KEY | FUNCTION | MULTIPLY-ADDS | INSTRUCTIONS
   KEY names the layer as Ember's firmware names its graph nodes:
     conv CxHxW -> CxHxW kKHxKW sS pP gG  (channel-first shapes; padding
     p<all> or p<top>,<left>,<bottom>,<right>; stride s<both> or s<h>,<w>)
   To add a layer: one line in LAYERS below. */
#include <stdint.h>
#include <string.h>
#include "arm_nnfunctions.h"
#include "bench.h"

typedef enum {
    CONV,            /* arm_convolve_s8 */
    CONV_WRAPPER,    /* arm_convolve_wrapper_s8 (what TFLite Micro calls) */
    CONV_1X1_FAST,   /* arm_convolve_1x1_s8_fast */
    DW,              /* arm_depthwise_conv_s8 (the general one) */
    DW_WRAPPER,      /* arm_depthwise_conv_wrapper_s8 (what TFLite Micro calls) */
    MAXPOOL,         /* arm_max_pool_s8 */
    AVGPOOL,         /* arm_avgpool_s8 */
    GLOBAL_AVGPOOL,  /* arm_avgpool_s8 over the whole plane */
    FC,              /* arm_fully_connected_s8 */
} kernel_t;

static const char *const KERNEL_NAMES[] = {
    "arm_convolve_s8", "arm_convolve_wrapper_s8", "arm_convolve_1x1_s8_fast",
    "arm_depthwise_conv_s8", "arm_depthwise_conv_wrapper_s8", "arm_max_pool_s8",
    "arm_avgpool_s8", "arm_avgpool_s8", "arm_fully_connected_s8",
};

typedef struct {
    kernel_t kernel;
    int in_c, in_h, in_w; /* input, channel-first as Ember names it */
    int out_c;            /* output channels (pools, depthwise: in_c) */
    int k_h, k_w, s_h, s_w;
    int pad_t, pad_l, pad_b, pad_r;
} layer_t;

/* The layers. FashionMNIST CNN (scripts/model-to-firmware.sh --model cnn):
   conv 1->16 3x3 pad 1 on 28x28, ReLU, maxpool 2, conv 16->32 3x3 pad 1 on
   14x14, ReLU, maxpool 2, linear 1568->10. MLPerf Tiny KWS DS-CNN
   (core/src/nn/zoo.rs KwsDsCnn): the 10x4 stride-2 stem with TFLite's SAME
   padding on 49x10 (4 rows above, 5 below, a column either side), a block's
   depthwise 3x3 and pointwise 64->64 on 25x5, the global average pool. */
static const layer_t LAYERS[] = {
    /* kernel         in_c in_h in_w out_c k_h k_w s_h s_w  t  l  b  r */
    {CONV,             1,  28,  28,  16,   3,  3,  1,  1,   1, 1, 1, 1},
    {MAXPOOL,         16,  28,  28,  16,   2,  2,  2,  2,   0, 0, 0, 0},
    {CONV,            16,  14,  14,  32,   3,  3,  1,  1,   1, 1, 1, 1},
    {MAXPOOL,         32,  14,  14,  32,   2,  2,  2,  2,   0, 0, 0, 0},
    {FC,            1568,   1,   1,  10,   1,  1,  1,  1,   0, 0, 0, 0},
    {CONV,             1,  49,  10,  64,  10,  4,  2,  2,   4, 1, 5, 1},
    {DW,              64,  25,   5,  64,   3,  3,  1,  1,   1, 1, 1, 1},
    {DW_WRAPPER,      64,  25,   5,  64,   3,  3,  1,  1,   1, 1, 1, 1},
    {CONV_1X1_FAST,   64,  25,   5,  64,   1,  1,  1,  1,   0, 0, 0, 0},
    {GLOBAL_AVGPOOL,  64,  25,   5,  64,  25,  5,  1,  1,   0, 0, 0, 0},
};

#define BUF 16384
static int8_t input[BUF] __attribute__((aligned(4)));
static int8_t output[BUF] __attribute__((aligned(4)));
static int8_t weights[BUF] __attribute__((aligned(4)));
static int32_t bias[256];
static int32_t multiplier[256];
static int32_t shift[256];
static int8_t scratch[4 * BUF] __attribute__((aligned(4)));

/* The values' seed: another (CMSIS_NN_CFLAGS="... -DBENCH_SEED=7") gives
   the same counts. */
#ifndef BENCH_SEED
#define BENCH_SEED 0x12345678u
#endif
static uint32_t rng = BENCH_SEED;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}
static void fill(int8_t *p, int n) {
    for (int i = 0; i < n; i++) {
        p[i] = (int8_t)next();
    }
}

/* A line of output. */
static char line[256];
static int len;
static void put(const char *s) {
    while (*s && len < (int)sizeof line - 1) {
        line[len++] = *s++;
    }
}
static void put_u(uint64_t v) {
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        char c[2] = {d[--n], 0};
        put(c);
    }
}
static void put_shape(int c, int h, int w) {
    put_u(c), put("x"), put_u(h), put("x"), put_u(w);
}
static void flush(void) {
    line[len] = 0;
    bench_puts(line);
    len = 0;
}

/* Ember's name of the layer (firmware-example/src/inference.rs `node_key`). */
static void put_key(const layer_t *l, int out_h, int out_w) {
    static const char *const OPS[] = {"conv", "conv", "conv", "conv", "conv",
                                      "maxpool", "avgpool", "gavgpool", "dense"};
    put(OPS[l->kernel]), put(" ");
    put_shape(l->in_c, l->in_h, l->in_w), put(" -> "), put_shape(l->out_c, out_h, out_w);
    if (l->kernel == GLOBAL_AVGPOOL || l->kernel == FC) {
        return;
    }
    put(" k"), put_u(l->k_h), put("x"), put_u(l->k_w);
    put(" s"), put_u(l->s_h);
    if (l->s_w != l->s_h) {
        put(","), put_u(l->s_w);
    }
    put(" p"), put_u(l->pad_t);
    if (l->pad_l != l->pad_t || l->pad_b != l->pad_t || l->pad_r != l->pad_t) {
        put(","), put_u(l->pad_l), put(","), put_u(l->pad_b), put(","), put_u(l->pad_r);
    }
    put(" g"), put_u(l->kernel == DW || l->kernel == DW_WRAPPER ? l->in_c : 1);
}

/* Runs the layer once; returns its status. */
static arm_cmsis_nn_status call(const layer_t *l, cmsis_nn_context *ctx, int out_h, int out_w) {
    const cmsis_nn_dims in = {1, l->in_h, l->in_w, l->in_c};
    const cmsis_nn_dims out = {1, out_h, out_w, l->out_c};
    const cmsis_nn_dims b = {1, 1, 1, l->out_c};
    const cmsis_nn_per_channel_quant_params q = {multiplier, shift};
    /* A ReLU after the layer: its output's zero point -128 is the floor. */
    const cmsis_nn_activation act = {-128, 127};
    switch (l->kernel) {
    case CONV:
    case CONV_WRAPPER:
    case CONV_1X1_FAST: {
        const cmsis_nn_dims f = {l->out_c, l->k_h, l->k_w, l->in_c};
        const cmsis_nn_conv_params p = {128, -128, {l->s_w, l->s_h}, {l->pad_l, l->pad_t},
                                        {1, 1}, act};
        if (l->kernel == CONV) {
            return arm_convolve_s8(ctx, &p, &q, &in, input, &f, weights, &b, bias, NULL, &out,
                                   output);
        }
        if (l->kernel == CONV_WRAPPER) {
            return arm_convolve_wrapper_s8(ctx, &p, &q, &in, input, &f, weights, &b, bias, &out,
                                           output);
        }
        return arm_convolve_1x1_s8_fast(ctx, &p, &q, &in, input, &f, weights, &b, bias, &out,
                                        output);
    }
    case DW:
    case DW_WRAPPER: {
        const cmsis_nn_dims f = {1, l->k_h, l->k_w, l->out_c};
        const cmsis_nn_dw_conv_params p = {128, -128, l->out_c / l->in_c, {l->s_w, l->s_h},
                                           {l->pad_l, l->pad_t}, {1, 1}, act};
        if (l->kernel == DW) {
            return arm_depthwise_conv_s8(ctx, &p, &q, &in, input, &f, weights, &b, bias, &out,
                                         output);
        }
        return arm_depthwise_conv_wrapper_s8(ctx, &p, &q, &in, input, &f, weights, &b, bias, &out,
                                             output);
    }
    case MAXPOOL:
    case AVGPOOL:
    case GLOBAL_AVGPOOL: {
        const cmsis_nn_dims f = {1, l->k_h, l->k_w, 1};
        const cmsis_nn_pool_params p = {{l->s_w, l->s_h}, {l->pad_l, l->pad_t}, act};
        if (l->kernel == MAXPOOL) {
            return arm_max_pool_s8(ctx, &p, &in, input, &f, &out, output);
        }
        return arm_avgpool_s8(ctx, &p, &in, input, &f, &out, output);
    }
    case FC: {
        const cmsis_nn_dims f = {l->in_c * l->in_h * l->in_w, 1, 1, l->out_c};
        const cmsis_nn_dims fin = {1, 1, 1, l->in_c * l->in_h * l->in_w};
        const cmsis_nn_dims fout = {1, 1, 1, l->out_c};
        const cmsis_nn_fc_params p = {128, 0, -128, act};
        const cmsis_nn_per_tensor_quant_params pq = {multiplier[0], shift[0]};
        return arm_fully_connected_s8(ctx, &p, &pq, &fin, input, &f, weights, &b, bias, &fout,
                                      output);
    }
    }
    return ARM_CMSIS_NN_ARG_ERROR;
}

/* The scratch the layer's kernel asks for. */
static int32_t buffer_size(const layer_t *l, int out_h, int out_w) {
    const cmsis_nn_dims in = {1, l->in_h, l->in_w, l->in_c};
    const cmsis_nn_dims out = {1, out_h, out_w, l->out_c};
    const cmsis_nn_activation act = {-128, 127};
    switch (l->kernel) {
    case CONV:
    case CONV_WRAPPER:
    case CONV_1X1_FAST: {
        const cmsis_nn_dims f = {l->out_c, l->k_h, l->k_w, l->in_c};
        const cmsis_nn_conv_params p = {128, -128, {l->s_w, l->s_h}, {l->pad_l, l->pad_t},
                                        {1, 1}, act};
        int32_t a = arm_convolve_wrapper_s8_get_buffer_size(&p, &in, &f, &out);
        int32_t c = arm_convolve_s8_get_buffer_size(&in, &f);
        return a > c ? a : c;
    }
    case DW:
    case DW_WRAPPER: {
        const cmsis_nn_dims f = {1, l->k_h, l->k_w, l->out_c};
        const cmsis_nn_dw_conv_params p = {128, -128, l->out_c / l->in_c, {l->s_w, l->s_h},
                                           {l->pad_l, l->pad_t}, {1, 1}, act};
        return arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in, &f, &out);
    }
    case AVGPOOL:
    case GLOBAL_AVGPOOL:
        return arm_avgpool_s8_get_buffer_size(out_w, l->in_c);
    case FC: {
        const cmsis_nn_dims f = {l->in_c * l->in_h * l->in_w, 1, 1, l->out_c};
        return arm_fully_connected_s8_get_buffer_size(&f);
    }
    default:
        return 0;
    }
}

/* Validates the count on a known sequence: `n` iterations of `subs; bne`
   (2n instructions, and a few around them). */
static void calibrate(uint32_t n) {
    uint64_t t0 = bench_ticks();
    __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
    uint64_t t1 = bench_ticks();
    put("calibration: a loop of 2,000,000 instructions counts "), put_u(bench_instructions(t1 - t0));
    put("\n"), flush();
}

int main(void) {
    int ok = 1;
    put("cmsis-nn: instructions per layer call (warm: the second call), SysTick under QEMU -icount "
        "shift=0, 40 instructions per tick\n");
    flush();
    calibrate(1000000);
    /* The timing's own cost: two clock reads back to back. */
    uint64_t e0 = bench_ticks(), e1 = bench_ticks();
    put("empty interval: "), put_u(bench_instructions(e1 - e0)), put(" instructions\n"), flush();
    for (unsigned i = 0; i < sizeof LAYERS / sizeof LAYERS[0]; i++) {
        const layer_t *l = &LAYERS[i];
        int out_h = (l->in_h + l->pad_t + l->pad_b - l->k_h) / l->s_h + 1;
        int out_w = (l->in_w + l->pad_l + l->pad_r - l->k_w) / l->s_w + 1;
        if (l->kernel == FC) {
            out_h = out_w = 1;
        }
        int in_len = l->in_c * l->in_h * l->in_w;
        int w_len = 0; /* pools: none */
        if (l->kernel == DW || l->kernel == DW_WRAPPER) {
            w_len = l->out_c * l->k_h * l->k_w;
        } else if (l->kernel == FC) {
            w_len = l->out_c * in_len;
        } else if (l->kernel <= CONV_1X1_FAST) {
            w_len = l->out_c * l->in_c * l->k_h * l->k_w;
        }
        int32_t need = buffer_size(l, out_h, out_w);
        if (in_len > BUF || w_len > BUF || l->out_c * out_h * out_w > BUF || l->out_c > 256 ||
            need > (int32_t)sizeof scratch) {
            put("layer "), put_u(i), put(": buffers too small\n"), flush();
            ok = 0;
            continue;
        }
        fill(input, in_len);
        fill(weights, w_len);
        for (int c = 0; c < l->out_c; c++) {
            bias[c] = (int32_t)(next() % 2001) - 1000;
            multiplier[c] = (int32_t)(0x40000000u + (next() & 0x3FFFFFFFu));
            shift[c] = -(int32_t)(7 + next() % 4);
        }
        cmsis_nn_context ctx = {need > 0 ? scratch : NULL, need};
        memset(scratch, 0, sizeof scratch);
        arm_cmsis_nn_status s = call(l, &ctx, out_h, out_w);
        uint64_t t0 = bench_ticks();
        s |= call(l, &ctx, out_h, out_w);
        uint64_t t1 = bench_ticks();
        uint64_t macs = 0;
        if (l->kernel == FC) {
            macs = (uint64_t)in_len * l->out_c;
        } else if (l->kernel <= DW_WRAPPER) {
            int groups = l->kernel == DW || l->kernel == DW_WRAPPER ? l->in_c : 1;
            macs = (uint64_t)l->out_c * out_h * out_w * (l->in_c / groups) * l->k_h * l->k_w;
        }
        put("cmsis-nn | "), put_key(l, out_h, out_w), put(" | "), put(KERNEL_NAMES[l->kernel]);
        put(" | "), put_u(macs), put(" | "), put_u(bench_instructions(t1 - t0));
        if (s != ARM_CMSIS_NN_SUCCESS) {
            put(" | ERROR (status)");
            ok = 0;
        }
        put("\n"), flush();
    }
    bench_puts(ok ? "PASS\n" : "FAIL\n");
    return ok ? 0 : 1;
}
