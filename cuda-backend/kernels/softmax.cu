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

// ---- Softmax and cross-entropy fused (ember-nn-core's `kernels::cross_entropy`):
// logits x [rows, classes], class indices t [rows] as floats.

// The class a target float names, or -1 if it is not an integer in [0, classes).
__device__ __forceinline__ long long class_of(float t, u64 classes) {
    if (t >= 0.0f && t < (float)classes && floorf(t) == t) {
        return (long long)t;
    }
    return -1;
}

// loss[r] = (m + ln Σ e^(x - m)) - x[t[r]], one thread per row.
extern "C" __global__ void ember_cross_entropy_serial(float* buf, u64 x, u64 t, u64 loss,
                                                      u64 rows, u64 classes) {
    FOR_EACH(r, rows) {
        const float* xs = buf + x + r * classes;
        float m = NEG_INF;
        for (u64 c = 0; c < classes; c++) {
            m = fmaxf(m, xs[c]);
        }
        if (m == NEG_INF) {
            m = 0.0f;
        }
        float s = 0.0f;
        for (u64 c = 0; c < classes; c++) {
            s += expf(xs[c] - m);
        }
        long long k = class_of(buf[t + r], classes);
        buf[loss + r] = k < 0 ? __int_as_float(0x7fc00000) : (m + logf(s)) - xs[k];
    }
}

// The same with one block per row, for many classes.
extern "C" __global__ void ember_cross_entropy_block(float* buf, u64 x, u64 t, u64 loss,
                                                     u64 rows, u64 classes) {
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xs = buf + x + r * classes;
        float m = NEG_INF;
        for (u64 c = threadIdx.x; c < classes; c += BLOCK) {
            m = fmaxf(m, xs[c]);
        }
        m = block_fmax(m);
        if (m == NEG_INF) {
            m = 0.0f;
        }
        float s = 0.0f;
        for (u64 c = threadIdx.x; c < classes; c += BLOCK) {
            s += expf(xs[c] - m);
        }
        s = block_sum(s);
        if (threadIdx.x == 0) {
            long long k = class_of(buf[t + r], classes);
            buf[loss + r] = k < 0 ? __int_as_float(0x7fc00000) : (m + logf(s)) - xs[k];
        }
    }
}

// dx[r, c] += dloss[r] * (softmax(x[r])[c] - [c == t[r]]), one thread per row;
// rows with a zero dloss get nothing, a row with an invalid target gets NaN.
extern "C" __global__ void ember_cross_entropy_backward_serial(float* buf, u64 x, u64 t,
                                                               u64 dloss, u64 dx, u64 rows,
                                                               u64 classes) {
    FOR_EACH(r, rows) {
        float g = buf[dloss + r];
        if (g == 0.0f) {
            continue;
        }
        const float* xs = buf + x + r * classes;
        float* ds = buf + dx + r * classes;
        float m = NEG_INF;
        for (u64 c = 0; c < classes; c++) {
            m = fmaxf(m, xs[c]);
        }
        if (m == NEG_INF) {
            m = 0.0f;
        }
        float s = 0.0f;
        for (u64 c = 0; c < classes; c++) {
            s += expf(xs[c] - m);
        }
        float inv = 1.0f / s;
        long long k = class_of(buf[t + r], classes);
        for (u64 c = 0; c < classes; c++) {
            float p = expf(xs[c] - m) * inv;
            float hot = k < 0 ? __int_as_float(0x7fc00000) : ((long long)c == k ? 1.0f : 0.0f);
            ds[c] += g * (p - hot);
        }
    }
}

// The same with one block per row (g is the row's, so a block skips a row as one).
extern "C" __global__ void ember_cross_entropy_backward_block(float* buf, u64 x, u64 t,
                                                              u64 dloss, u64 dx, u64 rows,
                                                              u64 classes) {
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        float g = buf[dloss + r];
        if (g == 0.0f) {
            continue;
        }
        const float* xs = buf + x + r * classes;
        float* ds = buf + dx + r * classes;
        float m = NEG_INF;
        for (u64 c = threadIdx.x; c < classes; c += BLOCK) {
            m = fmaxf(m, xs[c]);
        }
        m = block_fmax(m);
        if (m == NEG_INF) {
            m = 0.0f;
        }
        float s = 0.0f;
        for (u64 c = threadIdx.x; c < classes; c += BLOCK) {
            s += expf(xs[c] - m);
        }
        s = block_sum(s);
        float inv = 1.0f / s;
        long long k = class_of(buf[t + r], classes);
        for (u64 c = threadIdx.x; c < classes; c += BLOCK) {
            float p = expf(xs[c] - m) * inv;
            float hot = k < 0 ? __int_as_float(0x7fc00000) : ((long long)c == k ? 1.0f : 0.0f);
            ds[c] += g * (p - hot);
        }
    }
}
