// transpose.cu: Backend::transpose, y[b] (+)= x[b]ᵀ for `batch` row-major
// matrices of rows × cols (x[b][r, c] is at b*rows*cols + r*cols + c, and
// lands at y[b][c, r], b*rows*cols + c*rows + r).

#define TILE 32

// A classic shared-memory tiled transpose: a block of 32 × 8 threads loads a
// 32 × 32 tile with reads along rows of x (coalesced), then writes it with
// writes along rows of y (coalesced). The tile has one padding column so the
// column-wise reads of shared memory hit 32 different banks. Tiles and
// matrices beyond the grid are covered by loops (the grid is capped at the
// hardware's limits); their bounds depend only on blockIdx, so every thread
// of a block reaches the barriers.
extern "C" __global__ void ember_transpose(float* buf, u64 x, u64 y, u64 batch, u64 rows,
                                           u64 cols, int acc) {
    __shared__ float tile[TILE][TILE + 1];
    u64 tiles_r = (rows + TILE - 1) / TILE;
    u64 tiles_c = (cols + TILE - 1) / TILE;
    for (u64 b = blockIdx.z; b < batch; b += gridDim.z) {
        const float* xb = buf + x + b * rows * cols;
        float* yb = buf + y + b * rows * cols;
        for (u64 tr = blockIdx.y; tr < tiles_r; tr += gridDim.y) {
            for (u64 tc = blockIdx.x; tc < tiles_c; tc += gridDim.x) {
                // Load x[tr*32 + k, tc*32 + threadIdx.x].
                u64 c = tc * TILE + threadIdx.x;
                for (unsigned k = threadIdx.y; k < TILE; k += blockDim.y) {
                    u64 r = tr * TILE + k;
                    if (r < rows && c < cols) {
                        tile[k][threadIdx.x] = xb[r * cols + c];
                    }
                }
                __syncthreads();
                // Store y[tc*32 + k, tr*32 + threadIdx.x] = x[tr*32 + threadIdx.x, tc*32 + k].
                u64 r = tr * TILE + threadIdx.x;
                for (unsigned k = threadIdx.y; k < TILE; k += blockDim.y) {
                    u64 c2 = tc * TILE + k;
                    if (r < rows && c2 < cols) {
                        store(&yb[c2 * rows + r], tile[threadIdx.x][k], acc);
                    }
                }
                __syncthreads();  // the tile is reloaded next iteration
            }
        }
    }
}
