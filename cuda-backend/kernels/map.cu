// map.cu: Backend::map and Backend::map_backward, elementwise functions of
// one tensor. Each case is ember-nn-core's `Map::apply` / `Map::derivative`
// (core/src/ops/map.rs), written in the same order of operations.

// Function codes: `map_code` in src/kernels.rs sends these.
#define MAP_NEG 0
#define MAP_ADD_SCALAR 1   // p0 = c
#define MAP_MUL_SCALAR 2   // p0 = c
#define MAP_POW 3          // p0 = exponent
#define MAP_RECIP 4
#define MAP_EXP 5
#define MAP_LN 6
#define MAP_SQRT 7
#define MAP_ABS 8
#define MAP_SIN 9
#define MAP_COS 10
#define MAP_TANH 11
#define MAP_SIGMOID 12
#define MAP_RELU 13
#define MAP_LEAKY_RELU 14  // p0 = negative slope
#define MAP_ELU 15         // p0 = alpha
#define MAP_SELU 16
#define MAP_SILU 17
#define MAP_GELU_TANH 18
#define MAP_GELU_ERF 19
#define MAP_SOFTSIGN 20
#define MAP_SOFTPLUS 21
#define MAP_CLAMP 22       // p0 = lo, p1 = hi

// PyTorch's SELU constants and GELU's, as f32 (ember-nn-core's values).
#define SELU_ALPHA 1.6732632f
#define SELU_SCALE 1.050701f
#define SQRT_2_OVER_PI 0.7978846f
#define FRAC_1_SQRT_2 0.70710677f
#define FRAC_1_SQRT_2PI 0.3989423f

// The function's value at x.
__device__ __forceinline__ float map_apply(int f, float p0, float p1, float x) {
    switch (f) {
    case MAP_NEG: return -x;
    case MAP_ADD_SCALAR: return x + p0;
    case MAP_MUL_SCALAR: return x * p0;
    case MAP_POW: return p0 == 2.0f ? x * x : powf(x, p0);
    case MAP_RECIP: return 1.0f / x;
    case MAP_EXP: return expf(x);
    case MAP_LN: return logf(x);
    case MAP_SQRT: return sqrtf(x);
    case MAP_ABS: return fabsf(x);
    case MAP_SIN: return sinf(x);
    case MAP_COS: return cosf(x);
    case MAP_TANH: return tanhf(x);
    case MAP_SIGMOID: return sigmoid(x);
    case MAP_RELU: return x > 0.0f ? x : 0.0f;
    case MAP_LEAKY_RELU: return x > 0.0f ? x : p0 * x;
    case MAP_ELU: return x > 0.0f ? x : p0 * expm1f(x);
    case MAP_SELU: return SELU_SCALE * (x > 0.0f ? x : SELU_ALPHA * expm1f(x));
    case MAP_SILU: return x * sigmoid(x);
    case MAP_GELU_TANH: {
        float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case MAP_GELU_ERF: return 0.5f * x * (1.0f + erff(x * FRAC_1_SQRT_2));
    case MAP_SOFTSIGN: return x / (1.0f + fabsf(x));
    // max(x, 0) + ln(1 + e^-|x|): exact for large |x| of either sign.
    // fmaxf, like Rust's f32::max, returns the other operand when one is NaN.
    case MAP_SOFTPLUS: return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
    case MAP_CLAMP: return fminf(fmaxf(x, p0), p1);
    default: return __int_as_float(0x7fc00000);  // unknown code: NaN, never silent
    }
}

// The derivative at x, where y = map_apply(f, x).
__device__ __forceinline__ float map_derivative(int f, float p0, float p1, float x, float y) {
    switch (f) {
    case MAP_NEG: return -1.0f;
    case MAP_ADD_SCALAR: return 1.0f;
    case MAP_MUL_SCALAR: return p0;
    case MAP_POW:
        if (p0 == 0.0f) return 0.0f;
        if (p0 == 1.0f) return 1.0f;
        if (p0 == 2.0f) return 2.0f * x;
        return p0 * powf(x, p0 - 1.0f);
    case MAP_RECIP: return -y * y;
    case MAP_EXP: return y;
    case MAP_LN: return 1.0f / x;
    case MAP_SQRT: return 0.5f / y;
    case MAP_ABS: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case MAP_SIN: return cosf(x);
    case MAP_COS: return -sinf(x);
    case MAP_TANH: return 1.0f - y * y;
    case MAP_SIGMOID: return y * (1.0f - y);
    case MAP_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case MAP_LEAKY_RELU: return x > 0.0f ? 1.0f : p0;
    case MAP_ELU: return x > 0.0f ? 1.0f : p0 * expf(x);
    case MAP_SELU: return x > 0.0f ? SELU_SCALE : SELU_SCALE * SELU_ALPHA * expf(x);
    case MAP_SILU: {
        float s = sigmoid(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case MAP_GELU_TANH: {
        float x2 = x * x;
        float u = SQRT_2_OVER_PI * (x + 0.044715f * x2 * x);
        float t = tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x2);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    case MAP_GELU_ERF: {
        float cdf = 0.5f * (1.0f + erff(x * FRAC_1_SQRT_2));
        float pdf = FRAC_1_SQRT_2PI * expf(-0.5f * x * x);
        return cdf + x * pdf;
    }
    case MAP_SOFTSIGN: {
        float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    case MAP_SOFTPLUS: return sigmoid(x);
    case MAP_CLAMP: return (x > p0 && x < p1) ? 1.0f : 0.0f;  // 0 at a bound, as PyTorch
    default: return __int_as_float(0x7fc00000);
    }
}

// buf[y + i] = f(buf[x + i]).
extern "C" __global__ void ember_map(float* buf, u64 x, u64 y, u64 n, int f, float p0,
                                     float p1) {
    FOR_EACH(i, n) {
        buf[y + i] = map_apply(f, p0, p1, buf[x + i]);
    }
}

// buf[dx + i] += f'(x) * dy. A zero dy contributes exactly nothing, even where
// f'(x) is infinite (ln at 0), so a gradient blocked downstream stays blocked
// instead of becoming 0 * inf = NaN.
extern "C" __global__ void ember_map_backward(float* buf, u64 x, u64 y, u64 dy, u64 dx,
                                              u64 n, int f, float p0, float p1) {
    FOR_EACH(i, n) {
        float g = buf[dy + i];
        if (g != 0.0f) {
            buf[dx + i] += map_derivative(f, p0, p1, buf[x + i], buf[y + i]) * g;
        }
    }
}

// The epilogue of a fused linear layer, in place: buf[y + r*cols + c] =
// f(buf[y + r*cols + c] + buf[bias + c]) (ember-nn-core's `kernels::bias_act`).
extern "C" __global__ void ember_bias_act(float* buf, u64 bias, u64 y, u64 n, u64 cols, int f,
                                          float p0, float p1) {
    FOR_EACH(i, n) {
        buf[y + i] = map_apply(f, p0, p1, buf[y + i] + buf[bias + i % cols]);
    }
}

// Backward through a fused activation, in place: dy = f'(y) * dy, with the
// derivative taken from the output alone (`Map::fuses`: derivative(y, y)).
// A zero dy stays zero.
extern "C" __global__ void ember_act_backward(float* buf, u64 y, u64 dy, u64 n, int f,
                                              float p0, float p1) {
    FOR_EACH(i, n) {
        float g = buf[dy + i];
        float yv = buf[y + i];
        float d = map_derivative(f, p0, p1, yv, yv) * g;
        buf[dy + i] = g != 0.0f ? d : 0.0f;
    }
}
