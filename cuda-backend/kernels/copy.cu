// copy.cu: Backend::copy, a strided block copy (plain copies, concatenation,
// broadcasting a row with src_stride == 0, and their gradients).

// Block b's element j: buf[dst + b*dst_stride + j] (+)= buf[src + b*src_stride + j],
// for b in [0, blocks), j in [0, block_len). One thread per element.
// Destination blocks must not overlap each other (dst_stride >= block_len);
// the host uses ember_copy_serial otherwise.
extern "C" __global__ void ember_copy(float* buf, u64 src, u64 src_stride, u64 dst,
                                      u64 dst_stride, u64 blocks, u64 block_len, int acc) {
    FOR_EACH(t, blocks * block_len) {
        u64 b = t / block_len;
        u64 j = t - b * block_len;
        store(&buf[dst + b * dst_stride + j], buf[src + b * src_stride + j], acc);
    }
}

// The same copy by one thread, in the reference's order: for destination
// blocks that overlap each other, where the order of the additions (or which
// write lands last) is part of the result. The graph never asks for this;
// it exists so that no input gives a different answer from the CPU.
extern "C" __global__ void ember_copy_serial(float* buf, u64 src, u64 src_stride, u64 dst,
                                             u64 dst_stride, u64 blocks, u64 block_len,
                                             int acc) {
    if (blockIdx.x != 0 || threadIdx.x != 0) {
        return;
    }
    for (u64 b = 0; b < blocks; b++) {
        for (u64 j = 0; j < block_len; j++) {
            store(&buf[dst + b * dst_stride + j], buf[src + b * src_stride + j], acc);
        }
    }
}
