// expand.cu: Backend::expand, broadcasting along an axis (the transpose of a
// sum along that axis).

// y[o, l, i] (+)= x[o, i] for a [outer, len, inner] output. One thread per
// output element.
extern "C" __global__ void ember_expand(float* buf, u64 x, u64 y, u64 outer, u64 len,
                                        u64 inner, int acc) {
    FOR_EACH(t, outer * len * inner) {
        u64 o = t / (len * inner);
        u64 i = t % inner;
        store(&buf[y + t], buf[x + o * inner + i], acc);
    }
}
