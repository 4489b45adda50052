//! The plain training loop of the tutorials (issue 12, "the seeds") with
//! SGD, on two problems:
//!
//! 1. linear regression, `y = Xw + b + noise`, with `nn.Linear(2, 1)`,
//!    `nn.MSELoss()` and `SGD(lr=0.03)`:
//!    ```python
//!    for epoch in range(3):
//!        for X, y in data_iter:
//!            l = loss(net(X), y)
//!            trainer.zero_grad()
//!            l.backward()
//!            trainer.step()
//!    ```
//! 2. classification with a `train_epoch(model, train_loader, criterion,
//!    optimizer)` function that returns the epoch's mean loss, using
//!    `nn.CrossEntropyLoss()` and `SGD(lr, momentum=0.9)`.
//!
//! The data are generated; a "loader" is a shuffled index cut into batches.
//! The example checks that the regression finds the true `w` and `b`, and
//! that the classifier's loss falls and its accuracy ends high.
//!
//! Run: `cargo run --release -p ember-nn-core --example seed_train_loop`

use ember_nn_core::nn::init::{self, Init};
use ember_nn_core::nn::loss::{cross_entropy, mse, Loss, Reduction};
use ember_nn_core::nn::{self, Build, Forward, Linear, Module, Optimizer, ParamKind, ReLU, Rule};
use ember_nn_core::prelude::*;

const N: usize = 1000;
const BATCH: usize = 10;

/// `net = nn.Sequential(nn.Linear(2, 1))`
type Regression = (Linear<2, 1>,);
/// `nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))`
type Classifier = (Linear<2, 32>, ReLU, Linear<32, 3>);

fn main() -> Result<()> {
    let mut rng = Rng::new(0);
    linear_regression(&mut rng)?;
    classification(&mut rng)
}

fn linear_regression(rng: &mut Rng) -> Result<()> {
    let (true_w, true_b) = ([2.0f32, -3.4], 4.2f32);
    let xs: Vec<f32> = (0..2 * N).map(|_| rng.normal()).collect();
    let ys: Vec<f32> = xs
        .chunks(2)
        .map(|x| x[0] * true_w[0] + x[1] * true_w[1] + true_b + 0.01 * rng.normal())
        .collect();

    // The arena: sized at compile time for the largest graph, an
    // evaluation on all N samples.
    const FLOATS: usize = nn::train_floats::<Regression>(N, Loss::Mse, Rule::sgd());
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let net = Regression::build(&mut mem, rng)?;
    // net[0].weight.data.normal_(0, 0.01); net[0].bias.data.fill_(0)
    init::apply(&net.0, &mut mem, rng, |p| match p.kind {
        ParamKind::Weight => Init::Normal {
            mean: 0.0,
            std: 0.01,
        },
        ParamKind::Bias => Init::Zeros,
    })?;
    // trainer = torch.optim.SGD(net.parameters(), lr=0.03)
    let mut trainer: Optimizer = Optimizer::new(&mut mem, &net, Rule::sgd(), 0.03)?;

    let mut order: Vec<usize> = (0..N).collect();
    let (mut bx, mut by) = ([0.0f32; 2 * BATCH], [0.0f32; BATCH]);
    for epoch in 1..=3 {
        rng.shuffle(&mut order);
        for batch in order.chunks(BATCH) {
            for (j, &i) in batch.iter().enumerate() {
                bx[2 * j..2 * j + 2].copy_from_slice(&xs[2 * i..2 * i + 2]);
                by[j] = ys[i];
            }
            trainer.zero_grad(&mut mem)?;
            {
                let g = Graph::new(&mut mem);
                let x = g.from_slice((BATCH, Const::<2>), &bx);
                let y = g.from_slice((BATCH, Const::<1>), &by);
                let l = mse(net.forward(x), y, Reduction::Mean);
                l.backward()?;
            }
            trainer.step(&mut mem)?;
        }
        // l = loss(net(features), labels), outside autograd
        let g = Graph::new(&mut mem);
        let l = g.no_grad(|| {
            let x = g.from_slice((N, Const::<2>), &xs);
            let y = g.from_slice((N, Const::<1>), &ys);
            mse(net.forward(x), y, Reduction::Mean)
        });
        println!("epoch {epoch}, loss {:.6}", l.item()?);
    }
    let (w, b) = (mem.value(&net.0.weight)?, mem.value(&net.0.bias)?);
    println!("w {:?} (true {true_w:?}), b {b:?} (true {true_b})", w[0]);
    assert!((w[0][0] - true_w[0]).abs() < 0.01 && (w[0][1] - true_w[1]).abs() < 0.01);
    assert!((b[0] - true_b).abs() < 0.01);
    Ok(())
}

/// `train_epoch(model, train_loader, criterion, optimizer)`: one pass over
/// the data in shuffled batches; returns the mean of the batches' losses.
fn train_epoch<M, B: Backend>(
    model: &mut M,
    mem: &mut Memory<'_, B>,
    (xs, ys): (&[f32], &[usize]),
    rng: &mut Rng,
    optimizer: &mut Optimizer,
) -> Result<f32>
where
    M: Module
        + for<'t> Forward<Tensor<'t, (usize, Const<2>), B>, Output = Tensor<'t, (usize, Const<3>), B>>,
{
    model.train();
    let mut order: Vec<usize> = (0..ys.len()).collect();
    rng.shuffle(&mut order);
    let (mut running_loss, mut batches) = (0.0, 0);
    let (mut bx, mut by) = ([0.0f32; 2 * BATCH], [0usize; BATCH]);
    for batch in order.chunks(BATCH) {
        let n = batch.len();
        for (j, &i) in batch.iter().enumerate() {
            bx[2 * j..2 * j + 2].copy_from_slice(&xs[2 * i..2 * i + 2]);
            by[j] = ys[i];
        }
        optimizer.zero_grad(mem)?;
        {
            let g = Graph::new(mem);
            let data = g.from_slice((n, Const::<2>), &bx[..2 * n]);
            let outputs = model.forward(data);
            let loss = cross_entropy(outputs, &by[..n], Reduction::Mean);
            running_loss += loss.item()?;
            loss.backward()?;
        }
        optimizer.step(mem)?;
        batches += 1;
    }
    Ok(running_loss / batches as f32)
}

fn classification(rng: &mut Rng) -> Result<()> {
    // Three Gaussian blobs, one per class.
    let centres = [[0.0f32, 2.0], [-2.0, -1.0], [2.0, -1.0]];
    let ys: Vec<usize> = (0..N).map(|i| i % 3).collect();
    let xs: Vec<f32> = ys
        .iter()
        .flat_map(|&c| {
            [
                centres[c][0] + 0.7 * rng.normal(),
                centres[c][1] + 0.7 * rng.normal(),
            ]
        })
        .collect();

    const FLOATS: usize =
        nn::train_floats::<Classifier>(N, Loss::CrossEntropy, Rule::sgd_momentum(0.9));
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&Cpu, &mut buf[..]);
    let mut model = Classifier::build(&mut mem, rng)?;
    // optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    let mut optimizer: Optimizer = Optimizer::new(&mut mem, &model, Rule::sgd_momentum(0.9), 0.01)?;

    let mut losses = Vec::new();
    for epoch in 1..=5 {
        let loss = train_epoch(&mut model, &mut mem, (&xs, &ys), rng, &mut optimizer)?;
        println!("epoch {epoch}, running loss {loss:.4}");
        losses.push(loss);
    }
    // model.eval(); with torch.no_grad(): (model(X).argmax(1) == y).float().mean()
    model.eval();
    let mut pred = vec![0.0f32; N];
    {
        let g = Graph::new(&mut mem);
        g.no_grad(|| {
            model
                .forward(g.from_slice((N, Const::<2>), &xs))
                .argmax_axis::<1>()
                .read(&mut pred)
        })?;
    }
    let accuracy = pred
        .iter()
        .zip(&ys)
        .filter(|(p, y)| **p as usize == **y)
        .count() as f32
        / N as f32;
    println!("accuracy {:.1}%", 100.0 * accuracy);
    assert!(losses[4] < losses[0] / 2.0, "{losses:?}");
    assert!(accuracy > 0.9);
    Ok(())
}
