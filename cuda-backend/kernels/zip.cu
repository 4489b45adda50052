// zip.cu: Backend::zip and Backend::zip_backward, elementwise functions of
// two tensors of one length (ember-nn-core's `Zip`, core/src/ops/zip.rs).

// Function codes: `zip_code` in src/kernels.rs sends these.
#define ZIP_ADD 0
#define ZIP_SUB 1
#define ZIP_MUL 2
#define ZIP_DIV 3

// buf[y + i] = a ∘ b.
extern "C" __global__ void ember_zip(float* buf, u64 a, u64 b, u64 y, u64 n, int f) {
    FOR_EACH(i, n) {
        float av = buf[a + i], bv = buf[b + i], r;
        switch (f) {
        case ZIP_ADD: r = av + bv; break;
        case ZIP_SUB: r = av - bv; break;
        case ZIP_MUL: r = av * bv; break;
        case ZIP_DIV: r = av / bv; break;
        default: r = __int_as_float(0x7fc00000); break;
        }
        buf[y + i] = r;
    }
}

// buf[d + i] += ∂(a ∘ b)/∂a · dy, or ∂/∂b when rhs != 0. Addition and
// subtraction pass dy through (negated for the right side of a subtraction)
// without reading a or b, as the reference does.
extern "C" __global__ void ember_zip_backward(float* buf, u64 a, u64 b, u64 dy, u64 d, u64 n,
                                              int f, int rhs) {
    FOR_EACH(i, n) {
        float g = buf[dy + i];
        switch (f) {
        case ZIP_ADD: buf[d + i] += g; break;
        case ZIP_SUB:
            if (rhs) {
                buf[d + i] -= g;
            } else {
                buf[d + i] += g;
            }
            break;
        case ZIP_MUL:
            // ∂(ab)/∂a = b, ∂(ab)/∂b = a.
            buf[d + i] += (rhs ? buf[a + i] : buf[b + i]) * g;
            break;
        case ZIP_DIV: {
            // ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = -a/b².
            float av = buf[a + i], bv = buf[b + i];
            float p = rhs ? -av / (bv * bv) : 1.0f / bv;
            buf[d + i] += p * g;
            break;
        }
        default: buf[d + i] = __int_as_float(0x7fc00000); break;
        }
    }
}
