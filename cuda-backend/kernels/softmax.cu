// softmax.cu: Backend::softmax and Backend::softmax_backward (plain and log),
// along the middle axis of [outer, len, inner]. Element (o, l, i) is at
// (o*len + l)*inner + i; `log` selects log-softmax.

// One thread per (o, i): the reference's three passes, in its order.
// m = max over l (NaNs ignored; 0 if every value is -inf), s = Σ e^(x - m);
// softmax y = e^(x - m) · (1/s), log-softmax y = x - (m + ln s).
extern "C" __global__ void ember_softmax_serial(float* buf, u64 x, u64 y, u64 outer, u64 len,
                                                u64 inner, int log) {
    FOR_EACH(t, outer * inner) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        const float* xs = buf + x + o * len * inner + i;  // xs[l * inner] is x[o, l, i]
        float* ys = buf + y + o * len * inner + i;
        float m = NEG_INF;
        for (u64 l = 0; l < len; l++) {
            m = fmaxf(m, xs[l * inner]);
        }
        if (m == NEG_INF) {
            m = 0.0f;
        }
        float s = 0.0f;
        for (u64 l = 0; l < len; l++) {
            s += expf(xs[l * inner] - m);
        }
        if (log) {
            float lse = m + logf(s);
            for (u64 l = 0; l < len; l++) {
                ys[l * inner] = xs[l * inner] - lse;
            }
        } else {
            float inv = 1.0f / s;
            for (u64 l = 0; l < len; l++) {
                ys[l * inner] = expf(xs[l * inner] - m) * inv;
            }
        }
    }
}

// The same with one block per (o, i), for long axes: the maximum and the sum
// are block reductions.
extern "C" __global__ void ember_softmax_block(float* buf, u64 x, u64 y, u64 outer, u64 len,
                                               u64 inner, int log) {
    for (u64 t = blockIdx.x; t < outer * inner; t += gridDim.x) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        const float* xs = buf + x + o * len * inner + i;
        float* ys = buf + y + o * len * inner + i;
        float m = NEG_INF;
        for (u64 l = threadIdx.x; l < len; l += BLOCK) {
            m = fmaxf(m, xs[l * inner]);
        }
        m = block_fmax(m);
        if (m == NEG_INF) {
            m = 0.0f;
        }
        float s = 0.0f;
        for (u64 l = threadIdx.x; l < len; l += BLOCK) {
            s += expf(xs[l * inner] - m);
        }
        s = block_sum(s);
        if (log) {
            float lse = m + logf(s);
            for (u64 l = threadIdx.x; l < len; l += BLOCK) {
                ys[l * inner] = xs[l * inner] - lse;
            }
        } else {
            float inv = 1.0f / s;
            for (u64 l = threadIdx.x; l < len; l += BLOCK) {
                ys[l * inner] = expf(xs[l * inner] - m) * inv;
            }
        }
    }
}

// dx += J(y)ᵀ dy from the output y, one thread per (o, i):
// log-softmax: dx = dy - e^y · Σ dy;  softmax: dx = y · (dy - Σ dy·y).
extern "C" __global__ void ember_softmax_backward_serial(float* buf, u64 y, u64 dy, u64 dx,
                                                         u64 outer, u64 len, u64 inner,
                                                         int log) {
    FOR_EACH(t, outer * inner) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        u64 base = o * len * inner + i;  // + l * inner
        float s = 0.0f;
        for (u64 l = 0; l < len; l++) {
            u64 at = base + l * inner;
            s += log ? buf[dy + at] : buf[dy + at] * buf[y + at];
        }
        for (u64 l = 0; l < len; l++) {
            u64 at = base + l * inner;
            float g = buf[dy + at], yv = buf[y + at];
            buf[dx + at] += log ? g - expf(yv) * s : yv * (g - s);
        }
    }
}

// The same with one block per (o, i).
extern "C" __global__ void ember_softmax_backward_block(float* buf, u64 y, u64 dy, u64 dx,
                                                        u64 outer, u64 len, u64 inner,
                                                        int log) {
    for (u64 t = blockIdx.x; t < outer * inner; t += gridDim.x) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        u64 base = o * len * inner + i;
        float s = 0.0f;
        for (u64 l = threadIdx.x; l < len; l += BLOCK) {
            u64 at = base + l * inner;
            s += log ? buf[dy + at] : buf[dy + at] * buf[y + at];
        }
        s = block_sum(s);
        for (u64 l = threadIdx.x; l < len; l += BLOCK) {
            u64 at = base + l * inner;
            float g = buf[dy + at], yv = buf[y + at];
            buf[dx + at] += log ? g - expf(yv) * s : yv * (g - s);
        }
    }
}
