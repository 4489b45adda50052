// window.cu: Backend::window, the kernels over sliding windows of a
// [batch, channels, in_h, in_w] tensor (ember-nn-core's backend/window.rs:
// the geometry, the im2row layout and the max-pooling tie rule are its).
//
// Every kernel is a gather: one thread per output float, looping over what
// lands there, so no two threads write one float (no atomics) and the
// result does not depend on the schedule.

// #[repr(C)] `WindowParams` in src/kernels.rs: sixteen u64s.
struct WindowParams {
    u64 batch, channels, in_h, in_w, k_h, k_w, stride_h, stride_w;
    u64 dil_h, dil_w, pad_top, pad_left, out_h, out_w, groups, unused;
};

// The input index along one axis that output `o` reads at tap `k`, or -1 in
// the padding (Window::source).
__device__ __forceinline__ long long win_source(u64 o, u64 k, u64 stride, u64 dil, u64 pad,
                                                u64 len) {
    long long p = (long long)(o * stride + k * dil) - (long long)pad;
    return (p >= 0 && p < (long long)len) ? p : -1;
}

// The output along one axis whose tap `k` reads input `i`, or -1: the
// inverse of win_source (o · stride = i + pad − k · dil).
__device__ __forceinline__ long long win_reader(u64 i, u64 k, u64 stride, u64 dil, u64 pad,
                                                u64 out_len) {
    long long t = (long long)(i + pad) - (long long)(k * dil);
    if (t < 0 || t % (long long)stride != 0) return -1;
    u64 o = (u64)t / stride;
    return o < out_len ? (long long)o : -1;
}

// im2row: rows[(g·N·L + n·L + pos)·width + (cl·k_h + i)·k_w + j] = x[n, g·cg + cl, y, x]
// (0 in the padding), one thread per float of the rows.
extern "C" __global__ void ember_unfold(float* buf, u64 x, u64 rows, WindowParams w) {
    u64 cg = w.channels / w.groups, taps = w.k_h * w.k_w, width = cg * taps;
    u64 l = w.out_h * w.out_w, nl = w.batch * l;
    FOR_EACH(idx, w.groups * nl * width) {
        u64 col = idx % width, row = idx / width;
        u64 g = row / nl, n = (row % nl) / l, pos = row % l;
        u64 cl = col / taps, i = (col % taps) / w.k_w, j = col % w.k_w;
        long long yy = win_source(pos / w.out_w, i, w.stride_h, w.dil_h, w.pad_top, w.in_h);
        long long xx = win_source(pos % w.out_w, j, w.stride_w, w.dil_w, w.pad_left, w.in_w);
        float v = 0.0f;
        if (yy >= 0 && xx >= 0) {
            u64 c = g * cg + cl;
            v = buf[x + ((n * w.channels + c) * w.in_h + (u64)yy) * w.in_w + (u64)xx];
        }
        buf[rows + idx] = v;
    }
}

// The adjoint: dx[n, c, y, x] += Σ rows[...] over every (tap, output) that
// read (y, x), one thread per input float, the taps in order.
extern "C" __global__ void ember_fold(float* buf, u64 rows, u64 dx, WindowParams w) {
    u64 cg = w.channels / w.groups, taps = w.k_h * w.k_w, width = cg * taps;
    u64 l = w.out_h * w.out_w, nl = w.batch * l;
    FOR_EACH(idx, w.batch * w.channels * w.in_h * w.in_w) {
        u64 xx = idx % w.in_w, yy = (idx / w.in_w) % w.in_h;
        u64 c = (idx / (w.in_w * w.in_h)) % w.channels, n = idx / (w.in_w * w.in_h * w.channels);
        u64 g = c / cg, cl = c % cg;
        float sum = 0.0f;
        for (u64 i = 0; i < w.k_h; ++i) {
            long long oh = win_reader(yy, i, w.stride_h, w.dil_h, w.pad_top, w.out_h);
            if (oh < 0) continue;
            for (u64 j = 0; j < w.k_w; ++j) {
                long long ow = win_reader(xx, j, w.stride_w, w.dil_w, w.pad_left, w.out_w);
                if (ow < 0) continue;
                u64 row = g * nl + n * l + (u64)oh * w.out_w + (u64)ow;
                sum += buf[rows + row * width + (cl * w.k_h + i) * w.k_w + j];
            }
        }
        buf[dx + idx] += sum;
    }
}

// The maximum of one window and its flat index in the plane, as ember-nn-core's
// Window::window_max: the first strictly greater value wins, a NaN always
// wins; -1 for a window wholly in padding.
__device__ long long win_max(const float* plane, u64 oh, u64 ow, const WindowParams& w,
                             float* best) {
    long long at = -1;
    float m = NEG_INF;
    for (u64 i = 0; i < w.k_h; ++i) {
        long long yy = win_source(oh, i, w.stride_h, w.dil_h, w.pad_top, w.in_h);
        if (yy < 0) continue;
        for (u64 j = 0; j < w.k_w; ++j) {
            long long xx = win_source(ow, j, w.stride_w, w.dil_w, w.pad_left, w.in_w);
            if (xx < 0) continue;
            long long k = yy * (long long)w.in_w + xx;
            float v = plane[k];
            if (at < 0 || v > m || is_nan(v)) {
                at = k;
                m = v;
            }
        }
    }
    *best = m;
    return at;
}

// y[p, oh, ow] = the maximum of its window, one thread per output.
extern "C" __global__ void ember_max_pool(float* buf, u64 x, u64 y, WindowParams w) {
    u64 l = w.out_h * w.out_w, plane = w.in_h * w.in_w;
    FOR_EACH(idx, w.batch * w.channels * l) {
        u64 p = idx / l, pos = idx % l;
        float m;
        win_max(buf + x + p * plane, pos / w.out_w, pos % w.out_w, w, &m);
        buf[y + idx] = m;
    }
}

// dx[p, y, x] += Σ dy over the windows whose maximum is (y, x), one thread
// per input float, the windows in order.
extern "C" __global__ void ember_max_pool_backward(float* buf, u64 x, u64 dy, u64 dx,
                                                   WindowParams w) {
    u64 l = w.out_h * w.out_w, plane = w.in_h * w.in_w;
    FOR_EACH(idx, w.batch * w.channels * plane) {
        u64 p = idx / plane, k = idx % plane;
        u64 yy = k / w.in_w, xx = k % w.in_w;
        const float* xp = buf + x + p * plane;
        float sum = 0.0f;
        for (u64 i = 0; i < w.k_h; ++i) {
            long long oh = win_reader(yy, i, w.stride_h, w.dil_h, w.pad_top, w.out_h);
            if (oh < 0) continue;
            for (u64 j = 0; j < w.k_w; ++j) {
                long long ow = win_reader(xx, j, w.stride_w, w.dil_w, w.pad_left, w.out_w);
                if (ow < 0) continue;
                float m;
                if (win_max(xp, (u64)oh, (u64)ow, w, &m) == (long long)k) {
                    sum += buf[dy + p * l + (u64)oh * w.out_w + (u64)ow];
                }
            }
        }
        buf[dx + idx] += sum;
    }
}
