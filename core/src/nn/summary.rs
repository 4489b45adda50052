//! A model summary that prints like PyTorch's `print(model)`.

use super::Module;
use core::fmt;

/// Displays a model's layers with their sizes, then its parameter count.
///
/// ```
/// use ember_nn_core::nn::{summary, Linear, ReLU};
/// type Mlp = (Linear<784, 512>, ReLU, Linear<512, 512>, ReLU, Linear<512, 10>);
/// # use ember_nn_core::prelude::*;
/// # use ember_nn_core::nn::Build;
/// # let mut buf = vec![0.0f32; 2 * 669_706];
/// # let mut mem = Memory::new(&Cpu, &mut buf[..]);
/// let model = Mlp::build(&mut mem, &mut Rng::new(0))?;
/// let text = format!("{}", summary(&model));
/// assert!(text.starts_with("Sequential(\n  (0): Linear(in_features=784, out_features=512, bias=True)\n  (1): ReLU()\n"));
/// assert!(text.ends_with("Total params: 669,706\n"));
/// # Ok::<(), ember_nn_core::Error>(())
/// ```
pub fn summary<M: Module>(model: &M) -> Summary<'_, M> {
    Summary(model)
}

/// See [`summary`].
pub struct Summary<'a, M>(&'a M);

impl<M: Module> fmt::Display for Summary<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_module(f, 0)?;
        f.write_str("\nTotal params: ")?;
        write_grouped(f, self.0.param_count())?;
        f.write_str("\n")
    }
}

/// Writes `n` with thousands separators.
fn write_grouped(f: &mut fmt::Formatter<'_>, n: usize) -> fmt::Result {
    let mut groups = [0usize; 8];
    let mut count = 0;
    let mut m = n;
    loop {
        groups[count] = m % 1000;
        count += 1;
        m /= 1000;
        if m == 0 || count == groups.len() {
            break;
        }
    }
    write!(f, "{}", groups[count - 1])?;
    for g in groups[..count - 1].iter().rev() {
        compact_loop!();
        write!(f, ",{g:03}")?;
    }
    Ok(())
}
