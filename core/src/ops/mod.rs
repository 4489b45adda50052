//! Operations: each module holds one family's forward (the tensor methods that
//! record a node) and its backward, side by side. The forward stores its
//! backward in the node it records (a function pointer), so a program links
//! the backward passes of the ops it records and no others.

mod autograd;
pub mod batch_norm;
pub mod broadcast;
pub mod conv;
pub mod create;
pub mod cross_entropy;
pub mod custom;
pub mod join;
pub mod linear;
pub mod map;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod softmax;
pub mod view;
pub mod window;
pub mod zip;
