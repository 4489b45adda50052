//! Helpers shared by the fuzz targets (`fuzz_targets/*.rs`).
//!
//! Linking this crate installs [`CappedAlloc`] as the global allocator: any
//! single allocation larger than the limit ([`ALLOC_LIMIT`] unless a target
//! sets another with [`set_alloc_limit`]) aborts the process, so that
//! libFuzzer records the input as a crash. A parser must size what it
//! allocates by the bytes it was given (and what they decode to), not by a
//! length field it has not checked; without sanitizers libFuzzer's own
//! `-malloc_limit_mb` is inert, and untouched pages of a huge `calloc` never
//! reach `-rss_limit_mb`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation a fuzz target may make by default: 64 MiB.
/// Inputs are at most a few KiB (`-max_len`), so a larger allocation means
/// a size taken from the data on trust.
pub const ALLOC_LIMIT: usize = 64 << 20;

static LIMIT: AtomicUsize = AtomicUsize::new(ALLOC_LIMIT);

/// Sets the largest single allocation (for a target whose valid inputs
/// legitimately decode to more, such as a compressed image).
pub fn set_alloc_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

fn over_limit(size: usize) -> bool {
    size > LIMIT.load(Ordering::Relaxed)
}

/// The system allocator, refusing allocations above the limit by
/// aborting (an allocation failure would abort too, but only once the
/// machine has run out of memory).
pub struct CappedAlloc;

#[cold]
fn too_large(size: usize) -> ! {
    // No allocation here: stderr is unbuffered and the message is static.
    let mut err = std::io::stderr();
    let _ = err.write_all(b"\n==ember-fuzz== allocation above the limit (see fuzz/src/lib.rs): ");
    let mut digits = [0u8; 20];
    let mut n = size;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes\n");
    std::process::abort();
}

// SAFETY: every call is forwarded to `System` unchanged, or aborts the process.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if over_limit(layout.size()) {
            too_large(layout.size());
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if over_limit(layout.size()) {
            too_large(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if over_limit(new_size) {
            too_large(new_size);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// `data` copied into 4-byte aligned storage (the `.emb` format is read in
/// place and refuses misaligned bytes). Read it with [`bytes`].
pub fn aligned(data: &[u8]) -> Vec<u32> {
    let mut words = vec![0u32; data.len().div_ceil(4)];
    bytes_mut(&mut words)[..data.len()].copy_from_slice(data);
    words
}

/// The bytes of `words`.
pub fn bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements and the slice
    // covers exactly the words' bytes, borrowed shared.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 4) }
}

/// The bytes of `words`, mutably.
pub fn bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: as in `bytes`, borrowed mutably.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 4) }
}

/// Splits off the first byte of a fuzz input (the options of a target that
/// takes some); `None` for an empty input.
pub fn split_byte(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(&b, rest)| (b, rest))
}
