//! Elementwise functions of two values and their derivatives, part of the
//! vocabulary the backends share; the tensor operators are in
//! `ops::zip`.

/// An elementwise function of two tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Zip {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
}

impl Zip {
    /// The value.
    #[inline]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Zip::Add => a + b,
            Zip::Sub => a - b,
            Zip::Mul => a * b,
            Zip::Div => a / b,
        }
    }
    /// `∂/∂a`.
    #[inline]
    pub fn d_lhs(self, _a: f32, b: f32) -> f32 {
        match self {
            Zip::Add | Zip::Sub => 1.0,
            Zip::Mul => b,
            Zip::Div => 1.0 / b,
        }
    }
    /// `∂/∂b`.
    #[inline]
    pub fn d_rhs(self, a: f32, b: f32) -> f32 {
        match self {
            Zip::Add => 1.0,
            Zip::Sub => -1.0,
            Zip::Mul => a,
            Zip::Div => -a / (b * b),
        }
    }
    /// The name of the backward node.
    pub fn name(self) -> &'static str {
        match self {
            Zip::Add => "AddBackward",
            Zip::Sub => "SubBackward",
            Zip::Mul => "MulBackward",
            Zip::Div => "DivBackward",
        }
    }
}
