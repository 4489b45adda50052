// reduce.cu: Backend::reduce (sum, max, argmax along an axis) and
// Backend::max_backward. The input is [outer, len, inner] in row-major order;
// the output is [outer, inner]. Element (o, l, i) is at (o*len + l)*inner + i.

// Reduction codes: `reduce_code` in src/kernels.rs sends these.
#define REDUCE_SUM 0
#define REDUCE_MAX 1
#define REDUCE_ARGMAX 2

// "No index yet": loses every tie, and reads as index 0 if nothing beat it.
#define NO_INDEX 0xffffffffffffffffull

// Whether candidate (va, ia) beats (vb, ib) for max/argmax: a NaN beats any
// number (NaN wins, as in PyTorch), a larger number beats a smaller, and
// between equal values (or two NaNs) the smaller index wins. Walking an axis
// in order with this rule gives the reference's answer (the first maximum,
// or the first NaN), and so does combining partial results in any order.
__device__ __forceinline__ bool beats(float va, u64 ia, float vb, u64 ib) {
    bool an = is_nan(va), bn = is_nan(vb);
    if (an != bn) return an;
    if (!an && va != vb) return va > vb;
    return ia < ib;
}

// Sum of xs[l * stride] for l < len, pairwise as the CPU reference adds:
// runs of 128 values in order, the runs' sums combined as a binary counter
// combines carries (run k joins the runs before it at each trailing one bit
// of k), so the partial sums form a balanced tree held in 64 floats.
__device__ __forceinline__ float cascade_sum(const float* xs, u64 len, u64 stride) {
    float stack[64];
    int depth = 0;
    u64 run = 0;
    for (u64 l0 = 0; l0 < len; l0 += 128, run++) {
        u64 end = l0 + 128 < len ? l0 + 128 : len;
        float s = 0.0f;
        for (u64 l = l0; l < end; l++) {
            s += xs[l * stride];
        }
        for (u64 c = run; c & 1; c >>= 1) {
            s = stack[--depth] + s;
        }
        stack[depth++] = s;
    }
    float total = 0.0f;
    while (depth > 0) {
        total = stack[--depth] + total;
    }
    return total;
}

// One thread per output: the reference's loop, in its order (sums pairwise).
extern "C" __global__ void ember_reduce_serial(float* buf, u64 x, u64 y, u64 outer, u64 len,
                                               u64 inner, int op, int acc) {
    FOR_EACH(t, outer * inner) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        const float* xs = buf + x + o * len * inner + i;  // xs[l * inner] is x[o, l, i]
        float r;
        if (op == REDUCE_SUM) {
            r = cascade_sum(xs, len, inner);
        } else {
            float m = NEG_INF;
            u64 best = NO_INDEX;
            for (u64 l = 0; l < len; l++) {
                float v = xs[l * inner];
                if (beats(v, l, m, best)) {
                    m = v;
                    best = l;
                    if (is_nan(v)) break;  // nothing beats the first NaN
                }
            }
            r = op == REDUCE_MAX ? m : (float)(best == NO_INDEX ? 0 : best);
        }
        store(&buf[y + t], r, acc);
    }
}

// One block per output: the threads split the axis, then combine.
extern "C" __global__ void ember_reduce_block(float* buf, u64 x, u64 y, u64 outer, u64 len,
                                              u64 inner, int op, int acc) {
    __shared__ float sv[BLOCK];
    __shared__ u64 si[BLOCK];
    // The loop bound is the same for every thread of a block, so the
    // barriers inside are reached by all of them.
    for (u64 t = blockIdx.x; t < outer * inner; t += gridDim.x) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        const float* xs = buf + x + o * len * inner + i;
        float r;
        if (op == REDUCE_SUM) {
            float s = 0.0f;
            for (u64 l = threadIdx.x; l < len; l += BLOCK) {
                s += xs[l * inner];
            }
            r = block_sum(s);
        } else {
            float m = NEG_INF;
            u64 best = NO_INDEX;
            for (u64 l = threadIdx.x; l < len; l += BLOCK) {
                float v = xs[l * inner];
                if (beats(v, l, m, best)) {
                    m = v;
                    best = l;
                }
            }
            sv[threadIdx.x] = m;
            si[threadIdx.x] = best;
            __syncthreads();
            for (unsigned w = BLOCK / 2; w > 0; w >>= 1) {
                if (threadIdx.x < w &&
                    beats(sv[threadIdx.x + w], si[threadIdx.x + w], sv[threadIdx.x], si[threadIdx.x])) {
                    sv[threadIdx.x] = sv[threadIdx.x + w];
                    si[threadIdx.x] = si[threadIdx.x + w];
                }
                __syncthreads();
            }
            best = si[0];
            r = op == REDUCE_MAX ? sv[0] : (float)(best == NO_INDEX ? 0 : best);
            __syncthreads();  // sv, si are reused by the next output
        }
        if (threadIdx.x == 0) {
            store(&buf[y + t], r, acc);
        }
    }
}

// Whether v is the maximum m that max() returned (NaN matches NaN).
__device__ __forceinline__ bool is_max(float v, float m) {
    return v == m || (is_nan(v) && is_nan(m));
}

// dx[o, l, i] += dy[o, i] / k at each of the k positions l where
// x[o, l, i] == y[o, i]: tied maxima share the gradient evenly, as in PyTorch.
// One thread per output position.
extern "C" __global__ void ember_max_backward_serial(float* buf, u64 x, u64 y, u64 dy, u64 dx,
                                                     u64 outer, u64 len, u64 inner) {
    FOR_EACH(t, outer * inner) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        float m = buf[y + t];
        u64 ties = 0;
        for (u64 l = 0; l < len; l++) {
            ties += is_max(buf[x + (o * len + l) * inner + i], m);
        }
        if (ties == 0) continue;
        float share = buf[dy + t] / (float)ties;
        for (u64 l = 0; l < len; l++) {
            u64 at = (o * len + l) * inner + i;
            if (is_max(buf[x + at], m)) {
                buf[dx + at] += share;
            }
        }
    }
}

// The same with one block per output position: the threads count the ties
// of their share of the axis, the block adds the counts, and each thread
// gives its ties their share.
extern "C" __global__ void ember_max_backward_block(float* buf, u64 x, u64 y, u64 dy, u64 dx,
                                                    u64 outer, u64 len, u64 inner) {
    for (u64 t = blockIdx.x; t < outer * inner; t += gridDim.x) {
        u64 o = t / inner;
        u64 i = t - o * inner;
        float m = buf[y + t];
        float mine = 0.0f;
        for (u64 l = threadIdx.x; l < len; l += BLOCK) {
            mine += is_max(buf[x + (o * len + l) * inner + i], m) ? 1.0f : 0.0f;
        }
        // Counts below 2^24 add exactly in floats.
        float ties = block_sum(mine);
        if (ties > 0.0f) {
            float share = buf[dy + t] / ties;
            for (u64 l = threadIdx.x; l < len; l += BLOCK) {
                u64 at = (o * len + l) * inner + i;
                if (is_max(buf[x + at], m)) {
                    buf[dx + at] += share;
                }
            }
        }
    }
}
