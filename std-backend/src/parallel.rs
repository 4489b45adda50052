//! [`Parallel`], a multi-threaded CPU backend for [`ember_nn_core`]. Tensors live
//! in a `[f32]`, as with the portable [`Cpu`] backend, so the same models and
//! training loops run on either; only the kernels differ.
//!
//! * Matrix products run on the [`gemm`] crate (a blocked, SIMD GEMM with
//!   run-time CPU feature detection, as used by candle). Transposed operands
//!   cost nothing: they are passed as strides. Large products are split over
//!   the backend's threads; batches of small ones run one product per thread;
//!   products below gemm's own threading threshold stay on the calling thread.
//! * Every other kernel runs the portable slice kernels of
//!   [`ember_nn_core::backend::kernels`] (the reference [`Cpu`] runs the same
//!   functions, so results agree bit for bit): on the calling thread below
//!   [`PAR_THRESHOLD`] elements (or with one thread), and above it on chunks handed to the
//!   backend's threads. Kernels along an axis (reductions, softmax, ...) are
//!   split over the dimensions before the axis.
//!
//! Each backend owns its own [`rayon::ThreadPool`], so its thread count is
//! independent of rayon's global pool and of other backends.
//!
//! ```
//! use ember_nn_core::prelude::*;
//! use ember_nn_std::Parallel;
//!
//! let be = Parallel::new(2);
//! let mut buf = vec![0.0f32; 1024];
//! let mut mem = Memory::new(&be, &mut buf[..]);
//! let g = Graph::new(&mut mem);
//! let a = g.tensor([[1.0f32, 2.0], [3.0, 4.0]]);
//! let b = g.tensor([[1.0f32, 0.0], [1.0, 1.0]]);
//! assert_eq!(a.matmul(b).to_array()?, [[3.0, 2.0], [7.0, 4.0]]);
//! # Ok::<(), ember_nn_core::Error>(())
//! ```

use core::ops::Range;
use ember_nn_core::backend::update::{Sqrt, Update};
use ember_nn_core::backend::{kernels, Acc, AxisDims, Blocks, Cpu, Gemm, HostKernels, Map};
use ember_nn_core::backend::{window, Reduce, WindowCall, Zip};
use ember_nn_core::Result;
use rayon::prelude::*;

/// Elements below which a kernel other than GEMM runs on the calling thread:
/// under this size, handing work to other threads costs more than it saves.
pub const PAR_THRESHOLD: usize = 32 * 1024;

/// The fewest elements a kernel hands to one task when it does split.
pub const MIN_CHUNK: usize = 8 * 1024;

/// Multiply-adds (`m·n·k`) below which one matrix product runs on one thread;
/// a batch of such products is then split over the threads, one product per
/// task. This is the `gemm` crate's own threading threshold.
pub const GEMM_PAR_THRESHOLD: usize = gemm::DEFAULT_THREADING_THRESHOLD;

/// A multi-threaded CPU backend: tensors live in a `[f32]`, kernels run on a
/// thread pool of its own.
#[derive(Debug)]
pub struct Parallel {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl Parallel {
    /// A backend with `threads` worker threads (0: one per available core,
    /// or as many as `RAYON_NUM_THREADS` says).
    ///
    /// # Panics
    /// If the operating system cannot start the threads; see [`try_new`](Self::try_new).
    pub fn new(threads: usize) -> Self {
        Self::try_new(threads).expect("could not start the backend's threads")
    }

    /// A backend with `threads` worker threads (0: one per available core),
    /// or the error that kept the threads from starting.
    pub fn try_new(threads: usize) -> core::result::Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ember-nn-std-{i}"))
            .build()?;
        let threads = pool.current_num_threads();
        Ok(Parallel { pool, threads })
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether work of `elements` floats runs whole on the calling thread:
    /// below [`PAR_THRESHOLD`], or with one thread (handing it to the
    /// pool's one thread would only add a wake-up and a wait).
    fn serial(&self, elements: usize) -> bool {
        self.threads == 1 || elements < PAR_THRESHOLD
    }

    /// How many units (elements, rows, blocks, matrices) of `unit` floats
    /// each go to one task, out of `units`: about four tasks per thread, none
    /// smaller than [`MIN_CHUNK`] floats.
    fn units_per_task(&self, units: usize, unit: usize) -> usize {
        let per_task = units.div_ceil(self.threads * 4);
        per_task.max(MIN_CHUNK.div_ceil(unit.max(1))).max(1)
    }

    /// Runs `f` on chunks of an elementwise output of `len` floats, in
    /// parallel (below [`PAR_THRESHOLD`], whole on the calling thread); `f`
    /// gets the chunk's range and the chunk.
    fn elementwise(&self, out: &mut [f32], f: impl Fn(Range<usize>, &mut [f32]) + Sync) {
        if self.serial(out.len()) {
            return f(0..out.len(), out);
        }
        let c = self.units_per_task(out.len(), 1);
        self.pool.install(|| {
            out.par_chunks_mut(c).enumerate().for_each(|(i, out)| {
                let start = i * c;
                f(start..start + out.len(), out)
            })
        });
    }

    /// Runs `f` on chunks of the outer dimension of an axis kernel, in
    /// parallel: `out` has `out_row` floats per outer index, and `f` gets the
    /// chunk's outer indices, the dimensions of the chunk and its output.
    /// Small tensors, and those with one outer index, run whole on the
    /// calling thread.
    fn over_outer(
        &self,
        d: AxisDims,
        out: &mut [f32],
        out_row: usize,
        f: impl Fn(Range<usize>, AxisDims, &mut [f32]) + Sync,
    ) {
        if self.serial(d.numel()) || d.outer < 2 {
            return f(0..d.outer, d, &mut out[..d.outer * out_row]);
        }
        let rows = self.units_per_task(d.outer, d.len * d.inner);
        self.pool.install(|| {
            out[..d.outer * out_row]
                .par_chunks_mut(rows * out_row)
                .enumerate()
                .for_each(|(i, out)| {
                    let first = i * rows;
                    let n = out.len() / out_row;
                    f(first..first + n, AxisDims { outer: n, ..d }, out)
                })
        });
    }

    /// Runs `f` on chunks of whole rows of `row` floats of `out`, in
    /// parallel (below [`PAR_THRESHOLD`], whole on the calling thread); `f`
    /// gets the chunk's row indices and the chunk.
    fn over_rows(&self, out: &mut [f32], row: usize, f: impl Fn(Range<usize>, &mut [f32]) + Sync) {
        let row = row.max(1);
        if self.serial(out.len()) {
            return f(0..out.len() / row, out);
        }
        let per = self.units_per_task(out.len() / row, row);
        self.pool.install(|| {
            out.par_chunks_mut(per * row)
                .enumerate()
                .for_each(|(i, out)| {
                    let first = i * per;
                    f(first..first + out.len() / row, out)
                })
        });
    }
}

impl Default for Parallel {
    /// One thread per available core.
    fn default() -> Self {
        Parallel::new(0)
    }
}

/// The rows `r` of a tensor with `row` floats per row.
fn rows<'a>(x: &'a [f32], r: &Range<usize>, row: usize) -> &'a [f32] {
    &x[r.start * row..r.end * row]
}

/// One row-major product `c (+)= op(a) · op(b)` on the `gemm` crate.
#[allow(clippy::too_many_arguments)]
fn gemm_one(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    c: &mut [f32],
    acc: Acc,
    parallelism: gemm::Parallelism,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // op(a)[i, p] lives at a[i * rs + p * cs].
    let (a_rs, a_cs) = if trans_a { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if trans_b { (1, k) } else { (n, 1) };
    // SAFETY: with these strides every element the product reads is at an
    // index below m·k of `a` and below k·n of `b`, and every element it
    // writes is below m·n of `c` (row-major, row stride n); the assertion
    // above keeps all of them inside the slices. `c` is a `&mut` slice, so it
    // overlaps neither `a` nor `b`, and nothing else touches these slices
    // while the call runs. Slice lengths fit in `isize`, so the casts do not
    // wrap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            acc == Acc::Add,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Below [`PAR_THRESHOLD`] elements (or when there is nothing to split)
/// each kernel runs the portable one on the calling thread (the chunking
/// helpers decide, once); above it, on chunks handed to the pool. The operands arrive checked and split by
/// core's host layer (`host_backend!`), so this holds kernels only.
impl HostKernels for Parallel {
    fn fill(&self, d: &mut [f32], value: f32) {
        self.elementwise(d, |_, d| d.fill(value));
    }

    fn copy(&self, s: &[f32], d: &mut [f32], b: &Blocks) {
        // Overlapping destination blocks must be written in order.
        let overlapping = b.blocks > 1 && b.dst_stride < b.block_len;
        if self.serial(b.blocks.saturating_mul(b.block_len)) || overlapping {
            return Cpu.copy(s, d, b);
        }
        if b.blocks == 1 {
            // One large block: split it.
            return self.elementwise(d, |r, d| {
                kernels::copy_blocks(&s[r], 0, d, 0, 1, d.len(), b.acc)
            });
        }
        // Whole blocks per task. With dst_stride ≥ block_len, the blocks
        // `first..first + nb` lie inside the task's `nb · dst_stride` floats.
        let per = self.units_per_task(b.blocks, b.block_len);
        self.pool.install(|| {
            d.par_chunks_mut(per * b.dst_stride)
                .enumerate()
                .for_each(|(i, d)| {
                    let first = i * per;
                    let nb = per.min(b.blocks - first);
                    kernels::copy_blocks(
                        &s[first * b.src_stride..],
                        b.src_stride,
                        d,
                        b.dst_stride,
                        nb,
                        b.block_len,
                        b.acc,
                    )
                })
        });
    }

    fn map(&self, f: Map, x: &[f32], y: &mut [f32]) {
        self.elementwise(y, |r, y| kernels::map(f, &x[r], y));
    }

    fn map_backward(&self, f: Map, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
        self.elementwise(dx, |r, dx| {
            kernels::map_backward(f, &x[r.clone()], &y[r.clone()], &dy[r], dx)
        });
    }

    fn bias_act(&self, f: Map, bias: &[f32], y: &mut [f32]) {
        self.over_rows(y, bias.len(), |_, y| kernels::bias_act(f, bias, y));
    }

    fn act_backward(&self, f: Map, y: &[f32], dy: &mut [f32]) {
        self.elementwise(dy, |r, dy| kernels::act_backward(f, &y[r], dy));
    }

    fn zip(&self, f: Zip, a: &[f32], b: &[f32], y: &mut [f32]) {
        self.elementwise(y, |r, y| kernels::zip(f, &a[r.clone()], &b[r], y));
    }

    fn zip_backward(&self, f: Zip, rhs: bool, a: &[f32], b: &[f32], dy: &[f32], d: &mut [f32]) {
        self.elementwise(d, |r, d| {
            kernels::zip_backward(f, rhs, &a[r.clone()], &b[r.clone()], &dy[r], d)
        });
    }

    fn gemm(&self, batch: usize, g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (g.m, g.n, g.k);
        let (sa, sb, sc) = (m * k, k * n, m * n);
        let c = &mut c[..batch * sc];
        if sc == 0 {
            return;
        }
        if k == 0 {
            // An empty sum: c = 0, or c unchanged.
            if g.acc == Acc::Set {
                c.fill(0.0);
            }
            return;
        }
        let one = |i: usize, c: &mut [f32], p| {
            let (a, b) = (&a[i * sa..][..sa], &b[i * sb..][..sb]);
            gemm_one((m, n, k), a, g.trans_a, b, g.trans_b, c, g.acc, p)
        };
        // One thread, or a product too small for gemm to split (its own
        // threshold): on the calling thread, without a hand-off to the
        // pool, which costs more than such a product (a futex wake and a
        // wait per call: 4-64-32-3 trained at batch 16 spent most of its
        // time there).
        if self.threads == 1 || batch.saturating_mul(m * n * k) < GEMM_PAR_THRESHOLD {
            for (i, c) in c.chunks_mut(sc).enumerate() {
                one(i, c, gemm::Parallelism::None);
            }
            return;
        }
        self.pool.install(|| {
            if batch > 1 && m * n * k < GEMM_PAR_THRESHOLD && self.threads > 1 {
                // Small products: one per task.
                c.par_chunks_mut(sc)
                    .enumerate()
                    .for_each(|(i, c)| one(i, c, gemm::Parallelism::None));
            } else {
                let p = if self.threads > 1 {
                    gemm::Parallelism::Rayon(self.threads)
                } else {
                    gemm::Parallelism::None
                };
                for (i, c) in c.chunks_mut(sc).enumerate() {
                    one(i, c, p);
                }
            }
        });
    }

    fn reduce(&self, op: Reduce, x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
        self.over_outer(d, y, d.inner, |r, dc, y| {
            kernels::reduce(op, rows(x, &r, d.len * d.inner), y, dc, acc)
        });
    }

    fn expand(&self, x: &[f32], y: &mut [f32], d: AxisDims, acc: Acc) {
        self.over_outer(d, y, d.len * d.inner, |r, dc, y| {
            kernels::expand(rows(x, &r, d.inner), y, dc, acc)
        });
    }

    fn max_backward(&self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims) {
        self.over_outer(d, dx, d.len * d.inner, |r, dc, dx| {
            let (xr, yr) = (d.len * d.inner, d.inner);
            kernels::max_backward(rows(x, &r, xr), rows(y, &r, yr), rows(dy, &r, yr), dx, dc)
        });
    }

    fn softmax(&self, x: &[f32], y: &mut [f32], d: AxisDims, log: bool) {
        self.over_outer(d, y, d.len * d.inner, |r, dc, y| {
            kernels::softmax(rows(x, &r, d.len * d.inner), y, dc, log)
        });
    }

    fn softmax_backward(&self, y: &[f32], dy: &[f32], dx: &mut [f32], d: AxisDims, log: bool) {
        let row = d.len * d.inner;
        self.over_outer(d, dx, row, |r, dc, dx| {
            kernels::softmax_backward(rows(y, &r, row), rows(dy, &r, row), dx, dc, log)
        });
    }

    fn cross_entropy(&self, x: &[f32], t: &[f32], loss: &mut [f32], classes: usize) {
        if self.serial(x.len()) || classes == 0 {
            return kernels::cross_entropy(x, t, loss, classes);
        }
        let per = self.units_per_task(loss.len(), classes);
        self.pool.install(|| {
            loss.par_chunks_mut(per).enumerate().for_each(|(i, loss)| {
                let r = i * per..i * per + loss.len();
                kernels::cross_entropy(rows(x, &r, classes), &t[r], loss, classes)
            })
        });
    }

    fn cross_entropy_backward(
        &self,
        x: &[f32],
        t: &[f32],
        dl: &[f32],
        dx: &mut [f32],
        classes: usize,
    ) {
        self.over_rows(dx, classes, |r, dx| {
            kernels::cross_entropy_backward(
                rows(x, &r, classes),
                &t[r.clone()],
                &dl[r],
                dx,
                classes,
            )
        });
    }

    fn transpose(
        &self,
        x: &[f32],
        y: &mut [f32],
        batch: usize,
        rows: usize,
        cols: usize,
        acc: Acc,
    ) {
        let sz = rows * cols;
        // One matrix is not split: a block of its rows is a strided block of
        // the output's columns.
        if self.serial(batch * sz) || batch < 2 {
            return kernels::transpose(x, y, batch, rows, cols, acc);
        }
        let per = self.units_per_task(batch, sz);
        self.pool.install(|| {
            y.par_chunks_mut(per * sz).enumerate().for_each(|(i, y)| {
                let nb = y.len() / sz;
                let x = &x[i * per * sz..][..nb * sz];
                kernels::transpose(x, y, nb, rows, cols, acc)
            })
        });
    }

    fn window(&self, call: &WindowCall, x: &[f32], dy: &[f32], out: &mut [f32]) {
        // Split by samples where each sample's slices are its own.
        let Some([sx, sdy, so]) = call.per_sample().filter(|_| call.window.batch > 1) else {
            return window::run(call, x, dy, out);
        };
        self.over_rows(out, so, |samples, out| {
            let (first, n) = (samples.start, samples.len());
            let x = &x[first * sx..][..n * sx];
            let dy = &dy[first * sdy..][..n * sdy];
            window::run(&call.with_batch(n), x, dy, out)
        });
    }

    fn update(&self, rule: &Update, p: &mut [f32], g: &[f32], planes: [&mut [f32]; 3]) {
        let n = p.len();
        if self.serial(n) {
            return kernels::update_with::<StdSqrt>(rule, p, g, planes);
        }
        let rule = *rule;
        let per = self.units_per_task(n, 1);
        // Each task takes the same run of elements from the parameter, the
        // gradient and every state plane.
        let [s0, s1, s2] = planes;
        fn chunks(s: &mut [f32], per: usize, count: usize) -> Vec<&mut [f32]> {
            let mut v: Vec<&mut [f32]> = s.chunks_mut(per).collect();
            v.resize_with(count, Default::default);
            v
        }
        let count = n.div_ceil(per);
        let tasks: Vec<_> = p
            .chunks_mut(per)
            .zip(g.chunks(per))
            .zip(
                chunks(s0, per, count)
                    .into_iter()
                    .zip(chunks(s1, per, count))
                    .zip(chunks(s2, per, count)),
            )
            .map(|((p, g), ((a, b), c))| (p, g, [a, b, c]))
            .collect();
        self.pool.install(|| {
            tasks
                .into_par_iter()
                .for_each(|(p, g, planes)| kernels::update_with::<StdSqrt>(&rule, p, g, planes))
        });
    }
}

ember_nn_core::host_backend!(Parallel);

/// The hardware square root, which the compiler vectorises (libm's, which
/// core uses so that it runs without `std`, it does not).
struct StdSqrt;

impl Sqrt for StdSqrt {
    #[inline(always)]
    fn sqrt(x: f32) -> f32 {
        x.sqrt()
    }
}

impl ember_nn_core::backend::Device for Parallel {
    type Storage = Vec<f32>;
    fn alloc(&self, floats: usize) -> Result<Vec<f32>> {
        ember_nn_core::backend::Device::alloc(&Cpu, floats)
    }
    fn name(&self) -> &str {
        "cpu (rayon)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts() {
        assert_eq!(Parallel::new(1).threads(), 1);
        assert_eq!(Parallel::new(3).threads(), 3);
        assert!(Parallel::new(0).threads() >= 1);
    }

    #[test]
    fn chunks_are_never_tiny() {
        let be = Parallel::new(2);
        assert_eq!(be.units_per_task(100_000, 1), 12_500);
        assert_eq!(be.units_per_task(40_000, 1), MIN_CHUNK);
        assert_eq!(be.units_per_task(10, 4100), 2);
        assert_eq!(be.units_per_task(1, 0), 8192);
    }
}
