//! Autograd basics as the PyTorch tutorials teach them (issue 12, "the
//! seeds"), ported cell by cell: `requires_grad`, `backward` with and
//! without an external gradient, accumulation and `grad.zero_()`,
//! `retain_graph`, `grad_fn`, `torch.no_grad()` and `detach`, then linear
//! regression by hand (`w -= lr * w.grad` outside autograd). Each result is
//! checked against the derivative worked out by hand.
//!
//! Run: `cargo run --release -p ember-nn-core --example seed_autograd`

use ember_nn_core::nn::loss::{bce_with_logits, mse, Reduction};
use ember_nn_core::prelude::*;
use ember_nn_core::ParamRef;

fn main() -> Result<()> {
    let mut buf = vec![0.0f32; 1 << 14];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut rng = Rng::new(0);

    // Each block is one notebook cell: a graph lives as long as its cell.
    {
        // a = torch.tensor([2., 3.], requires_grad=True); Q = 3*a**3 - b**2
        let g = Graph::new(&mut mem);
        let a = g.tensor([2.0f32, 3.0]).requires_grad();
        let b = g.tensor([6.0f32, 4.0]).requires_grad();
        let q = a.pow(3.0) * 3.0 - b.pow(2.0);
        // Q.backward(gradient=external_grad): Q is a vector.
        q.backward_with(&[1.0, 1.0])?;
        assert_eq!(a.grad()?, Some([36.0, 81.0])); // 9a²
        assert_eq!(b.grad()?, Some([-12.0, -8.0])); // -2b
                                                    // A new Q with external_grad [2, 2]: the gradients add up, so
                                                    // `9*a**2 == a.grad` is now false (a.grad is 9a² + 2·9a²).
        let q = a.pow(3.0) * 3.0 - b.pow(2.0);
        q.backward_with(&[2.0, 2.0])?;
        assert_eq!(a.grad()?, Some([108.0, 243.0]));
        assert_eq!(b.grad()?, Some([-36.0, -24.0]));
        println!(
            "Q = 3a³ - b²: a.grad {:?}, b.grad {:?}",
            a.grad()?,
            b.grad()?
        );
    }
    {
        // inp = torch.eye(4, 5, requires_grad=True); out = (inp+1).pow(2).t()
        let g = Graph::new(&mut mem);
        let inp = g.eye::<4, 5>().requires_grad();
        let out = (inp + 1.0).pow(2.0).t();
        let ones = [1.0f32; 20]; // torch.ones_like(out)
        let diag = |d: f32, off: f32| -> [[f32; 5]; 4] {
            core::array::from_fn(|i| core::array::from_fn(|j| if i == j { d } else { off }))
        };
        // out.backward(torch.ones_like(out), retain_graph=True), twice.
        out.backward_with_retain(&ones)?;
        assert_eq!(inp.grad()?, Some(diag(4.0, 2.0)));
        out.backward_with_retain(&ones)?;
        assert_eq!(inp.grad()?, Some(diag(8.0, 4.0)));
        // inp.grad.zero_(), then a third call.
        inp.zero_grad()?;
        out.backward_with_retain(&ones)?;
        assert_eq!(inp.grad()?, Some(diag(4.0, 2.0)));
        println!("(eye(4,5)+1)²ᵀ: first, second and after zero_() as PyTorch prints");
    }
    {
        // x = torch.ones(5); y = torch.zeros(3)
        // w = torch.randn(5, 3, requires_grad=True); b = torch.randn(3, requires_grad=True)
        // z = torch.matmul(x, w)+b; loss = binary_cross_entropy_with_logits(z, y)
        let g = Graph::new(&mut mem);
        let x = g.ones::<Rank1<5>>();
        let y = g.zeros::<Rank1<3>>();
        let w = g.randn((Const::<5>, Const::<3>), &mut rng).requires_grad();
        let b = g.randn((Const::<3>,), &mut rng).requires_grad();
        let z = x.matmul(w) + b;
        let loss = bce_with_logits(z, y, Reduction::Mean);
        println!(
            "grad_fn of z: {:?}, of loss: {:?}",
            z.grad_fn(),
            loss.grad_fn()
        );
        assert!(z.grad_fn().is_some() && loss.grad_fn().is_some());
        loss.backward()?;
        // d loss / dz = (sigmoid(z) - y) / 3; w.grad = x ⊗ that (x is all ones).
        let zv = z.to_array()?;
        let want: [f32; 3] = core::array::from_fn(|j| 1.0 / (1.0 + (-zv[j]).exp()) / 3.0);
        let (wg, bg) = (w.grad()?.unwrap(), b.grad()?.unwrap());
        for j in 0..3 {
            assert!((bg[j] - want[j]).abs() < 1e-6, "{bg:?} vs {want:?}");
        }
        assert!(
            wg.iter().all(|row| *row == bg),
            "every row of w.grad is b.grad"
        );
        println!("w.grad rows = b.grad = {bg:?}");

        // with torch.no_grad(): z = torch.matmul(x, w)+b  -> z.requires_grad is False
        assert!(z.is_requires_grad());
        let z2 = g.no_grad(|| x.matmul(w) + b);
        assert!(!z2.is_requires_grad());
        // z_det = z.detach()
        assert!(!z.detach().is_requires_grad());

        // a = randn(10, 3); b = randn(14, 6, requires_grad=True)
        // c = matmul(a, randn(3, 2)); d = b + 1
        let a = g.randn((Const::<10>, Const::<3>), &mut rng);
        let b = g.randn((Const::<14>, Const::<6>), &mut rng).requires_grad();
        let c = a.matmul(g.randn((Const::<3>, Const::<2>), &mut rng));
        let d = b + 1.0;
        assert_eq!(
            (
                c.is_requires_grad(),
                c.detach().is_requires_grad(),
                d.is_requires_grad()
            ),
            (false, false, true)
        );
    }
    {
        // x = torch.linspace(-2, 2, 101, requires_grad=True)
        // y = torch.sin(x) * (torch.sin(x) ** 2 + torch.cos(x) ** 2); y.sum().backward()
        let g = Graph::new(&mut mem);
        let x = g.linspace::<101>(-2.0, 2.0).requires_grad();
        let y = x.sin() * (x.sin().pow(2.0) + x.cos().pow(2.0));
        y.sum().backward()?;
        let (xs, dx) = (x.to_array()?, x.grad()?.unwrap());
        let err = xs
            .iter()
            .zip(&dx)
            .map(|(x, d)| (d - x.cos()).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-5, "x.grad is cos(x) up to {err}");
        println!("d/dx sin(x)(sin²x + cos²x) = cos(x) at 101 points, within {err:.1e}");
    }
    {
        // x, y, z = tensor([1.]), tensor([2.]), tensor([3.]), all requiring grad
        // f = (x + y) * (y - z); f.backward()
        let g = Graph::new(&mut mem);
        let x = g.tensor([1.0f32]).requires_grad();
        let y = g.tensor([2.0f32]).requires_grad();
        let z = g.tensor([3.0f32]).requires_grad();
        let f = (x + y) * (y - z);
        f.backward()?;
        assert_eq!(
            (x.grad()?, y.grad()?, z.grad()?),
            (Some([-1.0]), Some([2.0]), Some([-3.0]))
        );
    }
    {
        // x = torch.Tensor([1, 2, 3]); w = torch.tensor([1., 1, 1], requires_grad=True)
        // z = w @ x; z.backward(), twice: w.grad accumulates, x.grad is None.
        let g = Graph::new(&mut mem);
        let x = g.tensor([1.0f32, 2.0, 3.0]);
        let w = g.tensor([1.0f32, 1.0, 1.0]).requires_grad();
        w.matmul(x).backward()?;
        assert_eq!((x.grad()?, w.grad()?), (None, Some([1.0, 2.0, 3.0])));
        w.matmul(x).backward()?;
        assert_eq!(w.grad()?, Some([2.0, 4.0, 6.0]));
        // with torch.no_grad(): z = w @ x  -- nothing to walk back.
        let z = g.no_grad(|| w.matmul(x));
        assert!(z.backward().is_err());
        // w.grad.data.zero_(); z = w @ x; z.backward()
        w.zero_grad()?;
        w.matmul(x).backward()?;
        assert_eq!(w.grad()?, Some([1.0, 2.0, 3.0]));
    }
    {
        // x = tensor([2.], requires_grad=True); y = x * x; y.detach_(); z = x * y
        let g = Graph::new(&mut mem);
        let x = g.tensor([2.0f32]).requires_grad();
        let y = (x * x).detach();
        let z = x * y;
        z.backward()?;
        assert_eq!(x.grad()?, Some([4.0])); // y is a constant: dz/dx = y
    }

    linear_regression_by_hand(&mut mem, &mut rng)
}

/// Linear regression with autograd and a hand-written SGD step:
/// `y_hat = X @ w + b`, `loss.backward()`, then (in PyTorch, under
/// `torch.no_grad()`) `param -= lr * param.grad; param.grad.zero_()`.
/// In Ember, `w` and `b` are parameters in `Memory`; the update is done
/// between graphs, so autograd never sees it.
fn linear_regression_by_hand(mem: &mut Memory<'_, Cpu>, rng: &mut Rng) -> Result<()> {
    const N: usize = 1000;
    const BATCH: usize = 10;
    const LR: f32 = 0.03;
    let (true_w, true_b) = ([2.0f32, -3.4], 4.2f32);
    let xs: Vec<f32> = (0..2 * N).map(|_| rng.normal()).collect();
    let ys: Vec<f32> = xs
        .chunks(2)
        .map(|x| x[0] * true_w[0] + x[1] * true_w[1] + true_b + 0.01 * rng.normal())
        .collect();

    // w = torch.normal(0, 0.01, size=(2, 1), requires_grad=True); b = torch.zeros(1, requires_grad=True)
    let w = mem.param_from_fn::<Rank2<2, 1>>(|_| 0.01 * rng.normal())?;
    let b = mem.param_zeros::<Rank1<1>>()?;
    let params: [ParamRef; 2] = [w.into(), b.into()];

    let mut order: Vec<usize> = (0..N).collect();
    let (mut bx, mut by) = ([0.0f32; 2 * BATCH], [0.0f32; BATCH]);
    for epoch in 1..=3 {
        rng.shuffle(&mut order);
        for batch in order.chunks(BATCH) {
            for (j, &i) in batch.iter().enumerate() {
                bx[2 * j..2 * j + 2].copy_from_slice(&xs[2 * i..2 * i + 2]);
                by[j] = ys[i];
            }
            {
                let g = Graph::new(mem);
                let x = g.from_slice((BATCH, Const::<2>), &bx);
                let y = g.from_slice((BATCH, Const::<1>), &by);
                let y_hat = x.matmul(g.param(&w)) + g.param(&b);
                mse(y_hat, y, Reduction::Mean).backward()?;
            }
            sgd_by_hand(mem, &params, LR)?;
        }
        let g = Graph::new(mem);
        let loss = g.no_grad(|| {
            let x = g.from_slice((N, Const::<2>), &xs);
            let y = g.from_slice((N, Const::<1>), &ys);
            mse(x.matmul(g.param(&w)) + g.param(&b), y, Reduction::Mean)
        });
        println!("epoch {epoch}, loss {:.6}", loss.item()?);
    }
    let (w, b) = (mem.value(&w)?, mem.value(&b)?);
    println!("w {w:?} (true {true_w:?}), b {b:?} (true {true_b})");
    assert!((w[0][0] - true_w[0]).abs() < 0.01 && (w[1][0] - true_w[1]).abs() < 0.01);
    assert!((b[0] - true_b).abs() < 0.01);
    Ok(())
}

/// `param -= lr * param.grad; param.grad.zero_()` for each parameter.
fn sgd_by_hand(mem: &mut Memory<'_, Cpu>, params: &[ParamRef], lr: f32) -> Result<()> {
    for p in params {
        let (mut value, mut grad) = (vec![0.0f32; p.value.len], vec![0.0f32; p.grad.len]);
        mem.read(p.value, &mut value)?;
        mem.read(p.grad, &mut grad)?;
        for (v, g) in value.iter_mut().zip(&grad) {
            *v -= lr * g;
        }
        mem.write(p.value, &value)?;
        mem.fill(p.grad, 0.0)?;
    }
    Ok(())
}
