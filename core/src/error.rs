//! The error type of the core.

use crate::shape::Dims;

/// Everything that can go wrong in the core. No operation panics on data;
/// each failure is reported as one of these.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The memory arena has no room for `needed` more floats (`available` left).
    OutOfMemory {
        /// Floats requested.
        needed: usize,
        /// Floats still free.
        available: usize,
    },
    /// The graph's node table is full.
    TooManyNodes {
        /// The table's capacity.
        capacity: usize,
    },
    /// Two run-time shapes that must agree do not.
    Shape {
        /// What was being done.
        op: &'static str,
        /// The shape that was expected.
        expected: Dims,
        /// The shape that was found.
        found: Dims,
    },
    /// A host slice has the wrong length for the tensor.
    Length {
        /// Elements expected.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// `backward()` on a tensor with more than one element and no external gradient.
    NotScalar {
        /// The tensor's element count.
        numel: usize,
    },
    /// `backward()` on a tensor that does not require a gradient.
    NoGradient,
    /// The graph was already walked backward and freed; use `backward_retain` to walk it again.
    GraphFreed,
    /// `requires_grad` on a tensor that is not a leaf.
    NotALeaf,
    /// A value that must be finite is NaN or infinite.
    NonFinite {
        /// Where it was found.
        what: &'static str,
    },
    /// An argument is outside its allowed range.
    InvalidArgument {
        /// Which argument, and why.
        what: &'static str,
    },
    /// A tensor from another graph, or a stale handle.
    InvalidTensor,
    /// A backend failed (for example a GPU launch): its own code and
    /// message, carried inline (no allocation).
    Backend {
        /// The backend's code for the failure (CUDA's `CUresult`, say), or
        /// 0 when it has none.
        code: i32,
        /// The backend's message.
        message: Message,
    },
}

/// A backend's error message kept inline, without an allocator: up to
/// [`Message::CAPACITY`] bytes of UTF-8, cut at a character boundary (a
/// longer message keeps its beginning). It fits in the space [`Error`]'s
/// other variants already take, so it makes no `Result` larger.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message {
    len: u8,
    bytes: [u8; Message::CAPACITY],
}

impl Message {
    /// Bytes a message holds.
    pub const CAPACITY: usize = 42;

    /// The message `s`, cut to [`CAPACITY`](Self::CAPACITY) bytes at a
    /// character boundary.
    pub const fn new(s: &str) -> Self {
        let src = s.as_bytes();
        let mut len = if src.len() < Self::CAPACITY {
            src.len()
        } else {
            Self::CAPACITY
        };
        // Back up to the start of a character.
        while len < src.len() && len > 0 && (src[len] & 0xC0) == 0x80 {
            len -= 1;
        }
        let mut bytes = [0u8; Self::CAPACITY];
        let mut i = 0;
        while i < len {
            bytes[i] = src[i];
            i += 1;
        }
        Message {
            len: len as u8,
            bytes,
        }
    }

    /// A message written with `format_args!`, cut as [`new`](Self::new) cuts.
    pub fn format(args: core::fmt::Arguments<'_>) -> Self {
        struct Cut(Message);
        impl core::fmt::Write for Cut {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                let at = usize::from(self.0.len);
                let piece = Message::new(s);
                let room = Message::CAPACITY - at;
                let take = if usize::from(piece.len) <= room {
                    usize::from(piece.len)
                } else {
                    // Cut `s` to the room left, at a character boundary.
                    let mut n = room;
                    while n > 0 && !s.is_char_boundary(n) {
                        n -= 1;
                    }
                    n
                };
                self.0.bytes[at..at + take].copy_from_slice(&s.as_bytes()[..take]);
                self.0.len += take as u8;
                Ok(())
            }
        }
        let mut cut = Cut(Message::new(""));
        // Writing into a `Cut` cannot fail: it only stops taking bytes.
        let _ = core::fmt::write(&mut cut, args);
        cut.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..usize::from(self.len)];
        // The bytes are whole characters of a `str` (cut at boundaries).
        core::str::from_utf8(bytes).unwrap_or("")
    }
}

impl core::fmt::Debug for Message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for Message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::OutOfMemory { needed, available } => write!(
                f,
                "out of tensor memory: {needed} floats needed, {available} free"
            ),
            Error::TooManyNodes { capacity } => {
                write!(f, "the graph's node table is full ({capacity} nodes)")
            }
            Error::Shape {
                op,
                expected,
                found,
            } => write!(f, "{op}: expected shape {expected:?}, found {found:?}"),
            Error::Length { expected, found } => {
                write!(f, "expected {expected} elements, found {found}")
            }
            Error::NotScalar { numel } => write!(
                f,
                "backward() needs a scalar or an external gradient; the tensor has {numel} elements"
            ),
            Error::NoGradient => write!(f, "the tensor does not require a gradient"),
            Error::GraphFreed => write!(
                f,
                "the graph was already walked backward and freed; use backward_retain to walk it again"
            ),
            Error::NotALeaf => write!(f, "only leaf tensors can be made to require a gradient"),
            Error::NonFinite { what } => write!(f, "{what} is NaN or infinite"),
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::InvalidTensor => write!(f, "the tensor does not belong to this graph"),
            Error::Backend { code: 0, message } => write!(f, "backend error: {message}"),
            Error::Backend { code, message } => write!(f, "backend error {code}: {message}"),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter) {
        match self {
            Error::OutOfMemory { needed, available } => {
                defmt::write!(f, "OutOfMemory(needed {}, available {})", needed, available)
            }
            Error::TooManyNodes { capacity } => defmt::write!(f, "TooManyNodes({})", capacity),
            Error::Shape {
                op,
                expected,
                found,
            } => defmt::write!(
                f,
                "Shape({=str}: expected {}, found {})",
                op,
                expected,
                found
            ),
            Error::Length { expected, found } => {
                defmt::write!(f, "Length(expected {}, found {})", expected, found)
            }
            Error::NotScalar { numel } => defmt::write!(f, "NotScalar({})", numel),
            Error::NoGradient => defmt::write!(f, "NoGradient"),
            Error::GraphFreed => defmt::write!(f, "GraphFreed"),
            Error::NotALeaf => defmt::write!(f, "NotALeaf"),
            Error::NonFinite { what } => defmt::write!(f, "NonFinite({=str})", what),
            Error::InvalidArgument { what } => defmt::write!(f, "InvalidArgument({=str})", what),
            Error::InvalidTensor => defmt::write!(f, "InvalidTensor"),
            // The bytes (`:a`, shown as text by the host), not `as_str`,
            // whose UTF-8 check would link 0.5 KB into every program that
            // logs an error.
            Error::Backend { code, message } => {
                let bytes = &message.bytes[..usize::from(message.len)];
                defmt::write!(f, "Backend({=i32}: {=[u8]:a})", code, bytes)
            }
        }
    }
}

/// The core's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn messages_are_cut_at_a_character_boundary() {
        assert_eq!(Message::new("kernel failed").as_str(), "kernel failed");
        let long = "é".repeat(40); // 80 bytes
        let m = Message::new(&long);
        assert_eq!(m.as_str(), "é".repeat(21)); // 42 bytes
        let m = Message::format(format_args!("a{}", "é".repeat(40)));
        assert_eq!(m.as_str(), format!("a{}", "é".repeat(20))); // 41 bytes
        let e = Error::Backend {
            code: 700,
            message: Message::format(format_args!(
                "cuLaunchKernel: {}",
                "CUDA_ERROR_LAUNCH_FAILED"
            )),
        };
        assert_eq!(
            format!("{e}"),
            "backend error 700: cuLaunchKernel: CUDA_ERROR_LAUNCH_FAILED"
        );
        // No larger than the shape error's payload (on 32-bit targets too,
        // where a `Dims` is 20 bytes): a backend message makes no `Result`
        // bigger.
        let shape = core::mem::size_of::<&str>() + 2 * core::mem::size_of::<Dims>();
        assert!(core::mem::size_of::<Message>() + 4 <= shape);
        assert!(core::mem::size_of::<Message>() + 4 <= 4 + 2 * 20 + 4);
    }
}
