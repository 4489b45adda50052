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
    /// A backend kernel failed (for example a GPU launch).
    Backend {
        /// The backend's message.
        what: &'static str,
    },
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
            Error::Backend { what } => write!(f, "backend error: {what}"),
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
            Error::Backend { what } => defmt::write!(f, "Backend({=str})", what),
        }
    }
}

/// The core's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
