// cuda_host.hpp: just enough of CUDA's device environment to compile Ember's
// kernels (kernels/*.cu) as host C++ and run them on the CPU, for tests on
// machines without a GPU. Not a general CUDA emulator.
//
// - A launch runs its blocks one after another. A block's threads run as
//   fibers (ucontext) on one OS thread: each runs until it reaches
//   __syncthreads() or returns, so a barrier is a round of the scheduler.
//   A round in which some threads return while others wait at a barrier is a
//   divergent barrier, which is undefined on a GPU: the launch fails.
// - __shared__ variables become function statics: one copy, shared by the
//   block's threads, and blocks never overlap.
// - Kernels that use no barrier run their threads as plain calls (faster);
//   one that calls __syncthreads() unexpectedly fails the launch.
// - Math is the host's libm, so results match the GPU's to rounding only;
//   what this checks is indexing, bounds, control flow and the formulas.

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <utility>
#include <vector>

struct emu_dim3 {
    unsigned x, y, z;
};

static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__ static
#define __forceinline__ inline
#define __shared__ static

static inline float __int_as_float(unsigned int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

namespace emu {

enum { OK = 0, UNKNOWN_KERNEL = -1, DIVERGENT_BARRIER = -2, UNEXPECTED_BARRIER = -3 };

static const size_t STACK = 64 * 1024;
static ucontext_t scheduler;
static std::vector<ucontext_t> fibers;
static std::vector<char> stacks;
static std::vector<char> finished;
static unsigned current;
static bool fiber_mode;
static int error;
static const std::function<void()>* body;

static void set_thread(unsigned t) {
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

static void fiber_main() {
    (*body)();
    finished[current] = 1;
    // Returning resumes uc_link, the scheduler.
}

static int run_block(unsigned threads) {
    if (!fiber_mode) {
        for (unsigned t = 0; t < threads; t++) {
            set_thread(t);
            (*body)();
            if (error) return error;
        }
        return OK;
    }
    fibers.resize(threads);
    stacks.resize((size_t)threads * STACK);
    finished.assign(threads, 0);
    for (unsigned t = 0; t < threads; t++) {
        getcontext(&fibers[t]);
        fibers[t].uc_stack.ss_sp = &stacks[(size_t)t * STACK];
        fibers[t].uc_stack.ss_size = STACK;
        fibers[t].uc_link = &scheduler;
        makecontext(&fibers[t], fiber_main, 0);
    }
    for (;;) {
        unsigned waiting = 0, returned = 0;
        for (unsigned t = 0; t < threads; t++) {
            if (finished[t]) continue;
            current = t;
            set_thread(t);
            swapcontext(&scheduler, &fibers[t]);
            if (finished[t]) {
                returned++;
            } else {
                waiting++;
            }
        }
        if (waiting == 0) return OK;
        if (returned != 0) return DIVERGENT_BARRIER;
    }
}

static int run_grid(emu_dim3 grid, emu_dim3 block, const std::function<void()>& kernel,
                    bool barriers) {
    body = &kernel;
    fiber_mode = barriers;
    error = OK;
    gridDim = grid;
    blockDim = block;
    unsigned threads = block.x * block.y * block.z;
    for (unsigned z = 0; z < grid.z; z++) {
        for (unsigned y = 0; y < grid.y; y++) {
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                int rc = run_block(threads);
                if (rc != OK) return rc;
                if (error) return error;
            }
        }
    }
    return OK;
}

// Calls k with the arguments args[i] points to, as cuLaunchKernel does.
template <typename... A, size_t... I>
static void call(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<A*>(args[I])...);
}

template <typename... A>
static std::function<void()> bind(void (*k)(A...), void** args) {
    return [k, args] { call(k, args, std::index_sequence_for<A...>{}); };
}

}  // namespace emu

static void __syncthreads() {
    if (!emu::fiber_mode) {
        emu::error = emu::UNEXPECTED_BARRIER;
        return;
    }
    swapcontext(&emu::fibers[emu::current], &emu::scheduler);
}
