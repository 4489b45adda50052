//! placeholder

pub mod data;
