//! Behaviour of the backend on a device beyond the kernels' arithmetic:
//! memory, checks, errors, autograd end to end. Skipped (with a message)
//! where there is no CUDA device.

mod common;

use ember_nn_core::backend::Map;
use ember_nn_core::backend::{Backend, Device};
use ember_nn_core::prelude::*;
use ember_nn_core::Span;

#[test]
fn warm_up_compiles_every_kernel_and_loads_cublas() {
    let Some(cuda) = common::device() else {
        return;
    };
    let t = std::time::Instant::now();
    cuda.warm_up().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} (sm_{}{}): every kernel compiled and loaded in {:?}",
        cuda.name(),
        cuda.compute_capability().0,
        cuda.compute_capability().1,
        t.elapsed()
    );
}

#[test]
fn memory_round_trips_and_starts_zeroed() {
    let Some(cuda) = common::device() else {
        return;
    };
    let empty = cuda.alloc(0).unwrap();
    assert_eq!(cuda.buffer_len(&empty), 0);
    assert!(empty.is_empty());

    let mut buf = cuda.alloc(1000).unwrap();
    assert_eq!(buf.len(), 1000);
    let mut out = vec![1.0f32; 1000];
    cuda.download(&buf, Span::new(0, 1000), &mut out).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));

    let data: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
    cuda.upload(&mut buf, Span::new(17, 100), &data).unwrap();
    let mut back = vec![0.0f32; 102];
    cuda.download(&buf, Span::new(16, 102), &mut back).unwrap();
    assert_eq!(back[0], 0.0);
    assert_eq!(&back[1..101], &data[..]);
    assert_eq!(back[101], 0.0);

    cuda.fill(&mut buf, Span::new(500, 10), -2.5).unwrap();
    cuda.fill(&mut buf, Span::new(502, 3), 0.0).unwrap();
    let mut f = [0.0f32; 12];
    cuda.download(&buf, Span::new(499, 12), &mut f).unwrap();
    assert_eq!(
        f,
        [0.0, -2.5, -2.5, 0.0, 0.0, 0.0, -2.5, -2.5, -2.5, -2.5, -2.5, 0.0]
    );
}

#[test]
fn bad_spans_are_errors_not_faults() {
    let Some(cuda) = common::device() else {
        return;
    };
    let mut buf = cuda.alloc(64).unwrap();
    let invalid = |r: ember_nn_core::Result<()>| {
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "expected InvalidArgument, got {r:?}"
        )
    };
    invalid(cuda.upload(&mut buf, Span::new(60, 8), &[0.0; 8]));
    invalid(cuda.upload(&mut buf, Span::new(usize::MAX, 2), &[0.0; 2]));
    invalid(cuda.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(60, 8)));
    // The output overlaps the input.
    invalid(cuda.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(4, 8)));
    // Lengths differ.
    invalid(cuda.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(8, 4)));
    // A buffer of another backend (another stream) is refused.
    let other = common::device().unwrap();
    let mut foreign = other.alloc(64).unwrap();
    invalid(cuda.fill(&mut foreign, Span::new(0, 4), 1.0));
    // The buffer is still usable.
    cuda.map(&mut buf, Map::Exp, Span::new(0, 8), Span::new(8, 8))
        .unwrap();
    let mut out = [0.0f32; 8];
    cuda.download(&buf, Span::new(8, 8), &mut out).unwrap();
    assert_eq!(out, [1.0; 8]);
}

#[test]
fn out_of_device_memory_is_an_error() {
    let Some(cuda) = common::device() else {
        return;
    };
    // 2^60 bytes: more than any device has.
    match cuda.alloc(1 << 58) {
        Err(Error::OutOfMemory { needed, .. }) => assert_eq!(needed, 1 << 58),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
}

/// The crate documentation's example: PyTorch's autograd tutorial on the GPU.
#[test]
fn autograd_on_the_device() {
    let Some(cuda) = common::device() else {
        return;
    };
    let mut buf = cuda.alloc(1024).unwrap();
    let mut mem = Memory::new(&cuda, &mut buf);
    let g = Graph::new(&mut mem);
    let a = g.tensor([2.0f32, 3.0]).requires_grad();
    let b = g.tensor([6.0f32, 4.0]).requires_grad();
    let q = a.pow(3.0) * 3.0 - b.pow(2.0);
    assert_eq!(q.to_array().unwrap(), [-12.0, 65.0]);
    q.backward_with(&[1.0, 1.0]).unwrap();
    assert_eq!(a.grad().unwrap(), Some([36.0, 81.0]));
    assert_eq!(b.grad().unwrap(), Some([-12.0, -8.0]));
}

/// Uploads of 16 KiB and more go through the pinned staging buffers (three of
/// 1 Mi floats), in chunks; the caller's slice may be changed as soon as
/// `upload` returns, and every copy lands in order after the kernels queued
/// before it.
#[test]
fn large_uploads_are_staged_in_order_and_the_source_may_be_reused() {
    let Some(cuda) = common::device() else {
        return;
    };
    let big = (5 << 20) / 2 + 3; // 2.5 staging buffers and a bit: 3 chunks
    let part = 300_000; // 1.2 MB: one chunk
    let parts = 8; // more uploads than buffers: each is reused
    let len = 37 + big + parts * part + 100;
    let mut buf = cuda.alloc(len).unwrap();
    // A kernel queued before the uploads, writing where they write.
    cuda.fill(&mut buf, Span::new(0, len), 7.0).unwrap();

    // Exact in f32 (below 2^24) and different for every upload `k` < 256.
    let value = |k: usize, i: usize| ((i % 65_536) * 256 + k) as f32;
    let mut host: Vec<f32> = (0..big).map(|i| value(100, i)).collect();
    cuda.upload(&mut buf, Span::new(37, big), &host).unwrap();
    let mut at = 37 + big;
    for k in 0..parts {
        // The same host memory, rewritten at once for the next upload.
        for (i, v) in host[..part].iter_mut().enumerate() {
            *v = value(k, i);
        }
        cuda.upload(&mut buf, Span::new(at, part), &host[..part])
            .unwrap();
        at += part;
    }
    // A small upload, from the caller's memory, queued after the large ones.
    cuda.upload(&mut buf, Span::new(at, 100), &[-1.0; 100])
        .unwrap();

    let mut out = vec![0.0f32; len];
    cuda.download(&buf, Span::new(0, len), &mut out).unwrap();
    assert!(out[..37].iter().all(|&v| v == 7.0));
    assert!(
        (0..big).all(|i| out[37 + i] == value(100, i)),
        "the large upload"
    );
    for k in 0..parts {
        let start = 37 + big + k * part;
        assert!(
            (0..part).all(|i| out[start + i] == value(k, i)),
            "upload {k} of the same host memory"
        );
    }
    assert!(out[len - 100..].iter().all(|&v| v == -1.0));
}

/// Dropping the buffer and the backend right after large uploads, with the
/// copies possibly still in flight, is safe (the staging buffers outlive
/// their copies).
#[test]
fn dropping_right_after_large_uploads_is_safe() {
    let Some(cuda) = common::device() else {
        return;
    };
    let n = 3 << 20;
    let mut buf = cuda.alloc(n).unwrap();
    let host = vec![1.5f32; n];
    cuda.upload(&mut buf, Span::new(0, n), &host).unwrap();
    drop(buf);
    drop(cuda);
    let cuda = common::device().unwrap();
    let mut buf = cuda.alloc(n).unwrap();
    cuda.upload(&mut buf, Span::new(0, n), &host).unwrap();
    drop(cuda); // the backend first, then the buffer
    drop(buf);
}
