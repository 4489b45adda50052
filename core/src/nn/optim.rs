//! Optimizers: SGD (momentum, dampening, Nesterov, weight decay), Adam, AdamW,
//! RMSprop and Adagrad, with parameter groups, gradient clipping and state
//! that can be saved and restored.
//!
//! State lives in the same [`Memory`] as the parameters (so on a GPU it never
//! leaves the device); the bookkeeping lives in fixed-size tables of at most
//! `P` parameters and `G` groups.

use super::{Module, ParamInfo};
use crate::backend::{Backend, Span};
use crate::error::{Error, Result};
use crate::memory::{Memory, ParamRef};
use crate::ops::optim::Update;

/// An optimization algorithm and its hyper-parameters (PyTorch's defaults via the constructors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Stochastic gradient descent.
    Sgd {
        /// Momentum factor (0: none).
        momentum: f32,
        /// Dampening for momentum.
        dampening: f32,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 penalty.
        weight_decay: f32,
    },
    /// Adam (Kingma and Ba), with L2 weight decay in the gradient.
    Adam {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Denominator term.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// AMSGrad (Reddi et al.): divide by the largest second moment so far.
        amsgrad: bool,
    },
    /// AdamW (Loshchilov and Hutter): Adam with decoupled weight decay.
    AdamW {
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Denominator term.
        eps: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
        /// AMSGrad: divide by the largest second moment so far.
        amsgrad: bool,
    },
    /// RMSprop.
    RmsProp {
        /// Smoothing constant.
        alpha: f32,
        /// Denominator term.
        eps: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Momentum factor.
        momentum: f32,
        /// Centred variant.
        centered: bool,
    },
    /// Adagrad.
    Adagrad {
        /// Learning-rate decay per step.
        lr_decay: f32,
        /// L2 penalty.
        weight_decay: f32,
        /// Denominator term.
        eps: f32,
        /// Starting value of the squared-gradient sum.
        initial_accumulator: f32,
    },
}

impl Rule {
    /// Plain SGD.
    pub const fn sgd() -> Self {
        Rule::Sgd {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
    /// SGD with momentum.
    pub const fn sgd_momentum(momentum: f32) -> Self {
        Rule::Sgd {
            momentum,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
    /// Adam with PyTorch's defaults (betas 0.9/0.999, eps 1e-8).
    pub const fn adam() -> Self {
        Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub const fn adamw() -> Self {
        Rule::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            amsgrad: false,
        }
    }
    /// RMSprop with PyTorch's defaults (alpha 0.99, eps 1e-8).
    pub const fn rmsprop() -> Self {
        Rule::RmsProp {
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
    /// Adagrad with PyTorch's defaults (eps 1e-10).
    pub const fn adagrad() -> Self {
        Rule::Adagrad {
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
            initial_accumulator: 0.0,
        }
    }

    /// This rule with another weight decay (every algorithm has one).
    pub const fn with_weight_decay(self, wd: f32) -> Self {
        match self {
            Rule::Sgd {
                momentum,
                dampening,
                nesterov,
                ..
            } => Rule::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay: wd,
            },
            Rule::Adam {
                beta1,
                beta2,
                eps,
                amsgrad,
                ..
            } => Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay: wd,
                amsgrad,
            },
            Rule::AdamW {
                beta1,
                beta2,
                eps,
                amsgrad,
                ..
            } => Rule::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay: wd,
                amsgrad,
            },
            Rule::RmsProp {
                alpha,
                eps,
                momentum,
                centered,
                ..
            } => Rule::RmsProp {
                alpha,
                eps,
                weight_decay: wd,
                momentum,
                centered,
            },
            Rule::Adagrad {
                lr_decay,
                eps,
                initial_accumulator,
                ..
            } => Rule::Adagrad {
                lr_decay,
                weight_decay: wd,
                eps,
                initial_accumulator,
            },
        }
    }

    /// This rule with another momentum (SGD and RMSprop; the others have
    /// none and are returned unchanged).
    pub const fn with_momentum(self, m: f32) -> Self {
        match self {
            Rule::Sgd {
                dampening,
                nesterov,
                weight_decay,
                ..
            } => Rule::Sgd {
                momentum: m,
                dampening,
                nesterov,
                weight_decay,
            },
            Rule::RmsProp {
                alpha,
                eps,
                weight_decay,
                centered,
                ..
            } => Rule::RmsProp {
                alpha,
                eps,
                weight_decay,
                momentum: m,
                centered,
            },
            other => other,
        }
    }

    /// This rule with AMSGrad on or off (Adam and AdamW; the others are
    /// returned unchanged).
    pub const fn with_amsgrad(self, on: bool) -> Self {
        match self {
            Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                amsgrad: on,
            },
            Rule::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => Rule::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                amsgrad: on,
            },
            other => other,
        }
    }

    /// The rule's weight decay.
    pub const fn weight_decay(&self) -> f32 {
        match *self {
            Rule::Sgd { weight_decay, .. }
            | Rule::Adam { weight_decay, .. }
            | Rule::AdamW { weight_decay, .. }
            | Rule::RmsProp { weight_decay, .. }
            | Rule::Adagrad { weight_decay, .. } => weight_decay,
        }
    }

    /// Whether `other` is the same algorithm (its hyper-parameters may differ).
    pub fn same_algorithm(&self, other: &Rule) -> bool {
        core::mem::discriminant(self) == core::mem::discriminant(other)
    }

    /// Floats of state per parameter element.
    pub const fn state_planes(&self) -> usize {
        match self {
            Rule::Sgd { momentum, .. } => {
                if *momentum != 0.0 {
                    1
                } else {
                    0
                }
            }
            Rule::Adam { amsgrad, .. } | Rule::AdamW { amsgrad, .. } => {
                if *amsgrad {
                    3
                } else {
                    2
                }
            }
            Rule::RmsProp { .. } => 3,
            Rule::Adagrad { .. } => 1,
        }
    }

    /// The betas whose powers the bias corrections use (Adam, AdamW).
    fn betas(&self) -> Option<(f32, f32)> {
        match *self {
            Rule::Adam { beta1, beta2, .. } | Rule::AdamW { beta1, beta2, .. } => {
                Some((beta1, beta2))
            }
            _ => None,
        }
    }

    /// The elementwise update of step `t` (1-based) at learning rate `lr`;
    /// `powers` are `β1^t` and `β2^t` (for Adam and AdamW).
    fn update(&self, lr: f32, t: u32, powers: &Powers) -> Update {
        let tf = t as f32;
        match *self {
            Rule::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => Update::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
                first: t == 1,
            },
            Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                amsgrad,
            }
            | Rule::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                amsgrad,
            } => Update::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: matches!(self, Rule::AdamW { .. }),
                amsgrad,
                bias1: powers[0].one_minus(),
                bias2_sqrt: crate::sqrt::sqrtf(powers[1].one_minus()),
            },
            Rule::RmsProp {
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
            } => Update::RmsProp {
                lr,
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
            },
            Rule::Adagrad {
                lr_decay,
                weight_decay,
                eps,
                ..
            } => Update::Adagrad {
                lr: lr / (1.0 + (tf - 1.0) * lr_decay),
                eps,
                weight_decay,
            },
        }
    }
}

/// `x^t` for an `f32` factor `x`, as the running product of the steps so far
/// kept in two floats (`hi + lo`, the error of each product carried in
/// `lo`, Dekker's exact product), which is about as accurate as the double
/// PyTorch computes `1 - beta**step` in: no `powf` (1.5 KB of flash on a
/// microcontroller), no `f64`, and bit for bit the same on every target.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Power {
    hi: f32,
    lo: f32,
}

/// `β1^t` and `β2^t` of a group.
type Powers = [Power; 2];

impl Power {
    const ONE: Power = Power { hi: 1.0, lo: 0.0 };

    /// `a` split into a high half of 12 significant bits and the rest
    /// (Veltkamp), so that products of halves are exact.
    #[inline]
    fn split(a: f32) -> (f32, f32) {
        let c = 4097.0 * a;
        let hi = c - (c - a);
        (hi, a - hi)
    }

    /// This power times `x`.
    #[inline]
    fn times(self, x: f32) -> Power {
        let p = self.hi * x;
        let ((ah, al), (bh, bl)) = (Self::split(self.hi), Self::split(x));
        // The rounding error of `p` (exact, barring underflow).
        let err = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
        let lo = err + self.lo * x;
        let hi = p + lo;
        Power {
            hi,
            lo: lo - (hi - p),
        }
    }

    /// `1 - x^t`, rounded once.
    #[inline]
    fn one_minus(self) -> f32 {
        (1.0 - self.hi) - self.lo
    }

    /// `x^t` by the same products as `t` steps (so that a run restored from
    /// a checkpoint continues bit for bit); stops once the power is zero.
    fn of(x: f32, t: u32) -> Power {
        let mut p = Power::ONE;
        for _ in 0..t {
            compact_loop!();
            if p.hi == 0.0 && p.lo == 0.0 {
                break;
            }
            p = p.times(x);
        }
        p
    }

    /// A group's powers after `t` steps.
    fn group(rule: &Rule, t: u32) -> Powers {
        match rule.betas() {
            Some((b1, b2)) => [Power::of(b1, t), Power::of(b2, t)],
            None => [Power::ONE; 2],
        }
    }
}

/// A parameter group: its base learning rate, its current one, and its
/// hyper-parameters (PyTorch's groups carry weight decay, momentum, betas,
/// `amsgrad` as well as `lr`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    /// The learning rate the group was created with.
    pub base_lr: f32,
    /// The learning rate used by the next step (schedulers set it).
    pub lr: f32,
    /// The group's hyper-parameters: the optimizer's algorithm, with this
    /// group's values.
    pub rule: Rule,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    param: ParamRef,
    state: Span,
    group: u8,
}

/// An optimizer over at most `P` parameters in at most `G` groups.
#[derive(Clone, Debug)]
pub struct Optimizer<const P: usize = 64, const G: usize = 4> {
    rule: Rule,
    groups: heapless::Vec<Group, G>,
    slots: heapless::Vec<Slot, P>,
    steps: u32,
    /// Each group's `β1^t`, `β2^t` (Adam's bias corrections).
    powers: heapless::Vec<Powers, G>,
}

impl<const P: usize, const G: usize> Optimizer<P, G> {
    /// An optimizer for every parameter of `model` at learning rate `lr`
    /// (group 0), its state allocated in `mem`.
    pub fn new<M: Module, B: Backend>(
        mem: &mut Memory<'_, B>,
        model: &M,
        rule: Rule,
        lr: f32,
    ) -> Result<Self> {
        Self::new_where(mem, model, rule, lr, |_| true)
    }

    /// An optimizer whose group 0 holds the parameters of `model` for which
    /// `keep` is true (add the others with
    /// [`add_group_where`](Self::add_group_where)).
    pub fn new_where<M: Module, B: Backend>(
        mem: &mut Memory<'_, B>,
        model: &M,
        rule: Rule,
        lr: f32,
        keep: impl FnMut(&ParamInfo<'_>) -> bool,
    ) -> Result<Self> {
        let mut opt = Optimizer {
            rule,
            groups: heapless::Vec::new(),
            slots: heapless::Vec::new(),
            steps: 0,
            powers: heapless::Vec::new(),
        };
        opt.add_group_where(mem, model, lr, rule, keep)?;
        Ok(opt)
    }

    /// Adds the parameters of `module` as a new group with its own learning
    /// rate (PyTorch's `[{'params': ...}, {'params': ..., 'lr': ...}]`);
    /// returns the group's index.
    pub fn add_group<M: Module, B: Backend>(
        &mut self,
        mem: &mut Memory<'_, B>,
        module: &M,
        lr: f32,
    ) -> Result<usize> {
        let rule = self.rule;
        self.add_group_where(mem, module, lr, rule, |_| true)
    }

    /// Adds the parameters of `module` for which `keep` is true as a new
    /// group with its own learning rate and hyper-parameters `rule` (the
    /// optimizer's algorithm with other values: weight decay, momentum,
    /// betas, `amsgrad`); returns the group's index. PyTorch's "no weight
    /// decay on biases" recipe is [`new_where`](Self::new_where) then this:
    ///
    /// ```
    /// use ember_nn_core::prelude::*;
    /// use ember_nn_core::nn::{Build, Linear, Optimizer, ParamInfo, ParamKind, Rule};
    /// let mut buf = [0.0f32; 256];
    /// let mut mem = Memory::new(&Cpu, &mut buf[..]);
    /// let model = Linear::<4, 3>::build(&mut mem, &mut Rng::new(0))?;
    /// let adamw = Rule::adamw();
    /// let is_bias = |p: &ParamInfo<'_>| p.kind == ParamKind::Bias;
    /// let mut opt: Optimizer =
    ///     Optimizer::new_where(&mut mem, &model, adamw, 1e-3, |p| !is_bias(p))?;
    /// opt.add_group_where(&mut mem, &model, 1e-3, adamw.with_weight_decay(0.0), is_bias)?;
    /// assert_eq!(opt.groups()[1].rule.weight_decay(), 0.0);
    /// # Ok::<(), ember_nn_core::Error>(())
    /// ```
    pub fn add_group_where<M: Module, B: Backend>(
        &mut self,
        mem: &mut Memory<'_, B>,
        module: &M,
        lr: f32,
        rule: Rule,
        mut keep: impl FnMut(&ParamInfo<'_>) -> bool,
    ) -> Result<usize> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(Error::InvalidArgument {
                what: "learning rate must be finite and non-negative",
            });
        }
        if !rule.same_algorithm(&self.rule) {
            return Err(Error::InvalidArgument {
                what: "a parameter group must use the optimizer's algorithm",
            });
        }
        let group = self.groups.len();
        self.groups
            .push(Group {
                base_lr: lr,
                lr,
                rule,
            })
            .map_err(|_| Error::InvalidArgument {
                what: "too many parameter groups for this optimizer",
            })?;
        // As long as `groups`, whose capacity is the same.
        let _ = self.powers.push(Power::group(&rule, self.steps));
        let planes = rule.state_planes();
        let init = match rule {
            Rule::Adagrad {
                initial_accumulator,
                ..
            } => initial_accumulator,
            _ => 0.0,
        };
        let mut result = Ok(());
        module.named_parameters(&mut |p| {
            if result.is_err() || !keep(p) {
                return;
            }
            result = (|| {
                if self.slots.iter().any(|s| s.param == p.param) {
                    return Err(Error::InvalidArgument {
                        what: "a parameter appears in two groups",
                    });
                }
                let state = mem.alloc(planes * p.param.value.len)?;
                if init != 0.0 {
                    mem.fill(state, init)?;
                }
                self.slots
                    .push(Slot {
                        param: p.param,
                        state,
                        group: group as u8,
                    })
                    .map_err(|_| Error::InvalidArgument {
                        what: "too many parameters for this optimizer",
                    })
            })();
        });
        if result.is_err() {
            // Leave no half-made group behind.
            self.slots.retain(|s| usize::from(s.group) != group);
            self.groups.pop();
            self.powers.pop();
        }
        result.map(|()| group)
    }

    /// The rule (group 0's, and every group's algorithm).
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The learning rate of group 0.
    pub fn lr(&self) -> f32 {
        self.groups.first().map_or(0.0, |g| g.lr)
    }

    /// Sets every group's learning rate.
    pub fn set_lr(&mut self, lr: f32) {
        for g in self.groups.iter_mut() {
            compact_loop!();
            g.lr = lr;
        }
    }

    /// Sets each group's learning rate to `f(base_lr)` (what a scheduler does).
    pub fn set_lr_with(&mut self, mut f: impl FnMut(f32) -> f32) {
        for g in self.groups.iter_mut() {
            compact_loop!();
            g.lr = f(g.base_lr);
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Zeroes the gradient of every parameter this optimizer updates.
    pub fn zero_grad<B: Backend>(&self, mem: &mut Memory<'_, B>) -> Result<()> {
        for s in &self.slots {
            compact_loop!();
            mem.fill(s.param.grad, 0.0)?;
        }
        Ok(())
    }

    /// One update of every parameter from its gradient.
    pub fn step<B: Backend>(&mut self, mem: &mut Memory<'_, B>) -> Result<()> {
        let t = self.steps + 1;
        let mut powers = self.powers.clone();
        for (p, g) in powers.iter_mut().zip(&self.groups) {
            compact_loop!();
            if let Some((b1, b2)) = g.rule.betas() {
                *p = [p[0].times(b1), p[1].times(b2)];
            }
        }
        for s in &self.slots {
            compact_loop!();
            let group = usize::from(s.group);
            let (Some(g), Some(p)) = (self.groups.get(group), powers.get(group)) else {
                continue;
            };
            let rule = g.rule.update(g.lr, t, p);
            mem.with_buffer(|be, buf| be.update(buf, &rule, s.param.value, s.param.grad, s.state))?;
        }
        self.steps = t;
        self.powers = powers;
        Ok(())
    }

    /// Floats of optimizer state (for [`save_state`](Self::save_state)).
    pub fn state_len(&self) -> usize {
        self.slots.iter().map(|s| s.state.len).sum()
    }

    /// Copies the state (moments, momentum buffers) to `out`, which must be
    /// [`state_len`](Self::state_len) long. Save [`steps`](Self::steps) and
    /// [`groups`](Self::groups) beside it.
    pub fn save_state<B: Backend>(&self, mem: &Memory<'_, B>, out: &mut [f32]) -> Result<()> {
        self.check_len(out.len())?;
        let mut at = 0;
        for s in &self.slots {
            compact_loop!();
            mem.read(s.state, &mut out[at..at + s.state.len])?;
            at += s.state.len;
        }
        Ok(())
    }

    /// Restores state saved by [`save_state`](Self::save_state), the step
    /// count and the groups' current learning rates.
    pub fn load_state<B: Backend>(
        &mut self,
        mem: &mut Memory<'_, B>,
        data: &[f32],
        steps: u32,
        lrs: &[f32],
    ) -> Result<()> {
        self.check_len(data.len())?;
        if lrs.len() != self.groups.len() {
            return Err(Error::Length {
                expected: self.groups.len(),
                found: lrs.len(),
            });
        }
        let mut at = 0;
        for s in &self.slots {
            compact_loop!();
            mem.write(s.state, &data[at..at + s.state.len])?;
            at += s.state.len;
        }
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            compact_loop!();
            g.lr = lr;
        }
        for (p, g) in self.powers.iter_mut().zip(&self.groups) {
            compact_loop!();
            *p = Power::group(&g.rule, steps);
        }
        self.steps = steps;
        Ok(())
    }

    fn check_len(&self, n: usize) -> Result<()> {
        if n == self.state_len() {
            Ok(())
        } else {
            Err(Error::Length {
                expected: self.state_len(),
                found: n,
            })
        }
    }
}

/// Scales the gradients of `model` so that their global L2 norm is at most
/// `max_norm`; returns the norm before clipping (PyTorch's `clip_grad_norm_`).
/// A NaN or infinite norm is an error and leaves the gradients untouched.
pub fn clip_grad_norm<M: Module, B: Backend>(
    mem: &mut Memory<'_, B>,
    model: &M,
    max_norm: f32,
) -> Result<f32> {
    let mut chunk = [0.0f32; 256];
    let mut sum = 0.0f64;
    let mut result = Ok(());
    model.named_parameters(&mut |p| {
        let g = p.param.grad;
        let mut done = 0;
        while result.is_ok() && done < g.len {
            compact_loop!();
            let n = (g.len - done).min(chunk.len());
            result = mem.read(g.sub(done, n), &mut chunk[..n]);
            sum += chunk[..n]
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>();
            done += n;
        }
    });
    result?;
    let norm = libm::sqrt(sum) as f32;
    if !norm.is_finite() {
        return Err(Error::NonFinite {
            what: "gradient norm",
        });
    }
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        let mut result = Ok(());
        model.named_parameters(&mut |p| {
            let g = p.param.grad;
            let mut done = 0;
            while result.is_ok() && done < g.len {
                compact_loop!();
                let n = (g.len - done).min(chunk.len());
                let span = g.sub(done, n);
                result = mem.read(span, &mut chunk[..n]).and_then(|()| {
                    chunk[..n].iter_mut().for_each(|v| *v *= scale);
                    mem.write(span, &chunk[..n])
                });
                done += n;
            }
        });
        result?;
    }
    Ok(norm)
}
