// fill.cu: Backend::fill.

// buf[dst + i] = value for i in [0, n).
extern "C" __global__ void ember_fill(float* buf, u64 dst, u64 n, float value) {
    FOR_EACH(i, n) {
        buf[dst + i] = value;
    }
}
