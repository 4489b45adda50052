//! Optimizer update rules, elementwise: defined once in
//! [`crate::backend::update`] (the backends run them), re-exported here where
//! they have always been imported from.

pub use crate::backend::update::{LibmSqrt, Sqrt, Update};
