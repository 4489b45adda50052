// common.cuh: definitions shared by every Ember kernel.
//
// This text is prepended to each .cu file before NVRTC compiles it (NVRTC
// gets no include path, so every source is self-contained once joined).
//
// Conventions of all Ember kernels:
// - Every tensor lives in one device buffer `buf` of floats; a kernel gets
//   that buffer once and the *offsets* (in floats) of its operands, exactly as
//   the `Span`s of ember-nn-core's `Backend` trait describe them. The host checks
//   bounds and aliasing before launching.
// - Sizes and indices are 64-bit (`u64`): a buffer may hold more than 2^31 floats.
// - `acc` is ember-nn-core's `Acc`: 0 overwrites the output, 1 adds to it.
// - The formulas are those of ember-nn-core (`Map::apply`, `Map::derivative`,
//   `Zip`, `Update::step`, `kernels.rs`), operation for operation; the crate is
//   compiled with `--fmad=false` so that `a * b + c` rounds twice, as on the CPU.

typedef unsigned long long u64;

// Threads per block of every launch; the block reductions below assume it.
#define BLOCK 256

// -infinity, without <math.h> (NVRTC includes no system headers).
#define NEG_INF __int_as_float(0xff800000)

// NaN test that needs no header (valid because fast-math is off).
__device__ __forceinline__ bool is_nan(float x) { return x != x; }

// out = v (acc == 0) or out += v (acc == 1).
__device__ __forceinline__ void store(float* out, float v, int acc) {
    if (acc) {
        *out += v;
    } else {
        *out = v;
    }
}

// A grid-stride loop over [0, n): correct for any grid size, so the host may
// cap the number of blocks.
#define FOR_EACH(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); \
         i += (u64)blockDim.x * gridDim.x)

// The logistic function, split by sign so that neither branch overflows
// (ember-nn-core's `sigmoid`).
__device__ __forceinline__ float sigmoid(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);
    return e / (1.0f + e);
}

// Sum of one float per thread over the block (BLOCK threads). Every thread
// of the block must call it; every thread gets the total.
__device__ float block_sum(float v) {
    __shared__ float s[BLOCK];
    s[threadIdx.x] = v;
    __syncthreads();
    for (unsigned w = BLOCK / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            s[threadIdx.x] += s[threadIdx.x + w];
        }
        __syncthreads();
    }
    float total = s[0];
    __syncthreads();  // s is reused by the next call
    return total;
}

// Maximum over the block, ignoring NaNs as Rust's f32::max (and fmaxf) do.
__device__ float block_fmax(float v) {
    __shared__ float s[BLOCK];
    s[threadIdx.x] = v;
    __syncthreads();
    for (unsigned w = BLOCK / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) {
            s[threadIdx.x] = fmaxf(s[threadIdx.x], s[threadIdx.x + w]);
        }
        __syncthreads();
    }
    float m = s[0];
    __syncthreads();
    return m;
}

// Threads-per-output vs block-per-output: the axis kernels (reduce,
// max_backward, softmax) come in two forms. The "serial" form gives each
// (outer, inner) position one thread that walks the axis in order, as the
// CPU reference does; the "block" form gives each position a block whose
// threads split the axis and combine their partial results. The host picks
// the block form for long axes with few positions.
