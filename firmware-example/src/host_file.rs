//! Files on the host through semihosting (QEMU's `-semihosting-config
//! enable=on,target=native`): how the fine-tuned model goes back under QEMU.
//! A file is written whole under a temporary name and then renamed, so that
//! a reader never sees half a model.

use cortex_m_semihosting::{nr, syscall};

/// An open host file.
pub struct HostFile {
    fd: usize,
}

impl HostFile {
    /// Creates or truncates the file named by `path`, a NUL-terminated
    /// byte string (binary mode).
    pub fn create(path: &[u8]) -> Option<Self> {
        let len = c_len(path)?;
        // SAFETY: SYS_OPEN reads `len` bytes of the NUL-terminated name at
        // the pointer, which stays valid for the call.
        let fd = unsafe { syscall!(OPEN, path.as_ptr(), nr::open::W_TRUNC_BINARY, len) };
        (fd as isize >= 0).then_some(HostFile { fd })
    }

    /// Writes all of `bytes`; `false` when the host refused some.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            // SAFETY: SYS_WRITE reads `bytes.len()` bytes at the pointer,
            // valid for the call; it returns how many were NOT written.
            let left = unsafe { syscall!(WRITE, self.fd, bytes.as_ptr(), bytes.len()) };
            if left == 0 {
                return true;
            }
            if left >= bytes.len() {
                return false;
            }
            bytes = &bytes[bytes.len() - left..];
        }
        true
    }

    /// Closes the file; `false` when the host reports an error.
    pub fn close(self) -> bool {
        // SAFETY: SYS_CLOSE takes the handle SYS_OPEN returned, by value.
        unsafe { syscall!(CLOSE, self.fd) == 0 }
    }
}

/// Renames `from` to `to` (NUL-terminated), replacing `to`.
pub fn rename(from: &[u8], to: &[u8]) -> bool {
    let (Some(a), Some(b)) = (c_len(from), c_len(to)) else {
        return false;
    };
    // SAFETY: SYS_RENAME reads the two NUL-terminated names of the given
    // lengths at the pointers, valid for the call.
    unsafe { syscall!(RENAME, from.as_ptr(), a, to.as_ptr(), b) == 0 }
}

/// Removes the file named by `path` (NUL-terminated).
pub fn remove(path: &[u8]) -> bool {
    let Some(len) = c_len(path) else {
        return false;
    };
    // SAFETY: SYS_REMOVE reads the NUL-terminated name of `len` bytes at the
    // pointer, valid for the call.
    unsafe { syscall!(REMOVE, path.as_ptr(), len) == 0 }
}

/// The length of a NUL-terminated name without its NUL; `None` if `s` does
/// not end with the only NUL.
fn c_len(s: &[u8]) -> Option<usize> {
    match s.split_last() {
        Some((0, name)) if !name.contains(&0) => Some(name.len()),
        _ => None,
    }
}
