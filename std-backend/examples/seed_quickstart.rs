//! The PyTorch quickstart (issue 12, "the seeds"): `NeuralNetwork` (Flatten,
//! then Linear(28*28, 512), ReLU, Linear(512, 512), ReLU, Linear(512, 10)),
//! its `train` and `test` functions, cross-entropy and SGD, on FashionMNIST,
//! then saving the state_dict and predicting with a reloaded model.
//!
//! The images are the full set's when installed in
//! /usr/share/datasets/fashion-mnist/, else the subset built into ember-nn-std;
//! either way the first 6,000 training and 1,000 test images, so that the
//! example runs in seconds. The tutorial's `lr=1e-3` learns too slowly for
//! that; this uses 1e-2. The example checks that the test loss falls and the
//! accuracy rises well above chance, and that the reloaded model predicts
//! exactly what the trained one does.
//!
//! Run: `cargo run --release -p ember-nn-std --example seed_quickstart`

use ember_nn_core::nn::loss::{cross_entropy, Loss, Reduction};
use ember_nn_core::nn::{
    self, summary, Build, Flatten, Footprint, Forward, Linear, Module, Optimizer, ReLU, Rule,
};
use ember_nn_core::prelude::*;
use ember_nn_std::data::{DataLoader, Dataset, FashionMnist, Split, TensorDataset};
use ember_nn_std::{state_dict, Parallel};

#[path = "support/fashion.rs"]
mod fashion;
use fashion::fashion_mnist;

#[derive(Module)]
struct NeuralNetwork {
    flatten: Flatten<784>,
    linear_relu_stack: (
        Linear<784, 512>,
        ReLU,
        Linear<512, 512>,
        ReLU,
        Linear<512, 10>,
    ),
}

impl<'t, B: Backend> Forward<Tensor<'t, (usize, Const<28>, Const<28>), B>> for NeuralNetwork {
    type Output = Tensor<'t, (usize, Const<10>), B>;
    fn forward(&self, x: Tensor<'t, (usize, Const<28>, Const<28>), B>) -> Self::Output {
        let x = self.flatten.forward(x);
        self.linear_relu_stack.forward(x)
    }
}

const BATCH_SIZE: usize = 64;
/// Parameters, gradients and one batch's training step (SGD keeps no
/// state), and room for the reloaded copy's parameters and gradients.
const FLOATS: usize = 2 * NeuralNetwork::PARAMS
    + nn::train_floats::<NeuralNetwork>(BATCH_SIZE, Loss::CrossEntropy, Rule::sgd());

type Loader = DataLoader<TensorDataset>;

/// `train(dataloader, model, loss_fn, optimizer)`
fn train<B: Backend>(
    dataloader: &mut Loader,
    model: &mut NeuralNetwork,
    mem: &mut Memory<'_, B>,
    optimizer: &mut Optimizer,
) -> Result<()> {
    let size = dataloader.dataset().len();
    model.train();
    for (batch, b) in dataloader.iter().enumerate() {
        let n = b.len();
        optimizer.zero_grad(mem)?;
        let loss = {
            let g = Graph::new(mem);
            let x = g.from_slice((n, Const::<28>, Const::<28>), &b.features);
            // Compute prediction error, then backpropagation.
            let loss = cross_entropy(model.forward(x), &b.labels, Reduction::Mean);
            loss.backward()?;
            loss.item()?
        };
        optimizer.step(mem)?;
        if batch % 25 == 0 {
            let current = (batch + 1) * n;
            println!("loss: {loss:>7.6}  [{current:>5}/{size:>5}]");
        }
    }
    Ok(())
}

/// `test(dataloader, model, loss_fn)`: the mean loss and the accuracy.
fn test<B: Backend>(
    dataloader: &mut Loader,
    model: &mut NeuralNetwork,
    mem: &mut Memory<'_, B>,
) -> Result<(f32, f32)> {
    let (size, num_batches) = (dataloader.dataset().len(), dataloader.len());
    model.eval();
    let (mut test_loss, mut correct) = (0.0f32, 0usize);
    let mut pred = [0.0f32; BATCH_SIZE];
    for b in dataloader.iter() {
        let n = b.len();
        let g = Graph::new(mem);
        // with torch.no_grad():
        g.no_grad(|| -> Result<()> {
            let logits = model.forward(g.from_slice((n, Const::<28>, Const::<28>), &b.features));
            test_loss += cross_entropy(logits, &b.labels, Reduction::Mean).item()?;
            logits.argmax_axis::<1>().read(&mut pred[..n])?;
            Ok(())
        })?;
        correct += pred[..n]
            .iter()
            .zip(&b.labels)
            .filter(|(p, y)| **p as usize == **y)
            .count();
    }
    let (test_loss, correct) = (test_loss / num_batches as f32, correct as f32 / size as f32);
    println!(
        "Test Error: \n Accuracy: {:>0.1}%, Avg loss: {test_loss:>8.6} \n",
        100.0 * correct
    );
    Ok((test_loss, correct))
}

fn main() -> Result<()> {
    let mut train_dataloader = DataLoader::new(fashion_mnist(Split::Train, 6000)?, BATCH_SIZE)
        .shuffle(true)
        .seed(0);
    let mut test_dataloader = DataLoader::new(fashion_mnist(Split::Test, 1000)?, BATCH_SIZE);
    let first = test_dataloader.iter().next().unwrap();
    println!(
        "Shape of X [N, H, W]: [{}, 28, 28]\nShape of y: [{}]",
        first.len(),
        first.labels.len()
    );

    let device = Parallel::new(0);
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&device, &mut buf[..]);
    let mut model = NeuralNetwork::build(&mut mem, &mut Rng::new(0))?;
    println!("{}", summary(&model));

    // loss_fn = nn.CrossEntropyLoss(); optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    let mut optimizer: Optimizer = Optimizer::new(&mut mem, &model, Rule::sgd(), 1e-2)?;
    let (loss0, acc0) = test(&mut test_dataloader, &mut model, &mut mem)?;
    let epochs = 5;
    let mut last = (loss0, acc0);
    for t in 0..epochs {
        println!("Epoch {}\n-------------------------------", t + 1);
        train(&mut train_dataloader, &mut model, &mut mem, &mut optimizer)?;
        last = test(&mut test_dataloader, &mut model, &mut mem)?;
    }
    println!("Done!");
    assert!(last.0 < loss0 * 0.6, "test loss {loss0} -> {}", last.0);
    assert!(
        last.1 > 0.6 && last.1 > acc0 + 0.3,
        "accuracy {acc0} -> {}",
        last.1
    );

    // torch.save(model.state_dict(), "model.pth")
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("model.safetensors");
    state_dict::save(&path, &model, &mem).expect("saved");
    println!(
        "Saved PyTorch Model State to {} (a temporary directory, removed at the end)",
        path.display()
    );
    // model = NeuralNetwork(); model.load_state_dict(torch.load("model.pth"))
    let mut loaded = NeuralNetwork::build(&mut mem, &mut Rng::new(1))?;
    state_dict::load(&path, &loaded, &mut mem).expect("loaded");
    loaded.eval();

    // x, y = test_data[0][0], test_data[0][1]; pred = model(x)
    let sample = test_dataloader.dataset().get(0).unwrap();
    let (mut a, mut b) = ([0.0f32; 10], [0.0f32; 10]);
    {
        let g = Graph::new(&mut mem);
        let x = g.from_slice((1usize, Const::<28>, Const::<28>), sample.features);
        model.forward(x).read(&mut a)?;
        loaded.forward(x).read(&mut b)?;
    }
    assert_eq!(
        a.map(f32::to_bits),
        b.map(f32::to_bits),
        "the reloaded model is the trained one"
    );
    let argmax = b
        .iter()
        .enumerate()
        .fold(0, |m, (i, v)| if *v > b[m] { i } else { m });
    println!(
        "Predicted: \"{}\", Actual: \"{}\"",
        FashionMnist::CLASSES[argmax],
        FashionMnist::CLASSES[sample.label]
    );
    Ok(())
}
