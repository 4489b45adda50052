//! The CNN that the tutorials teach after the feed-forward network (the
//! Italian course's lesson 5.1, PyTorch's "Training a Classifier"): `Net`
//! with `conv1 = Conv2d(3, 6, 5)`, `pool = MaxPool2d(2, 2)`, `conv2 =
//! Conv2d(6, 16, 5)`, then `fc1`, `fc2`, `fc3` of 120, 84 and 10 units, its
//! `forward` with the functional ReLU and `torch.flatten`, cross-entropy and
//! SGD with momentum, here on FashionMNIST's one channel of 28×28 (so
//! `Conv2d(1, 6, 5)` and `fc1` of 16·4·4 inputs).
//!
//! The images are the full set's when installed in
//! /usr/share/datasets/fashion-mnist/, else the subset built into
//! ember-nn-std; either way the first 6,000 training and 1,000 test images,
//! so that the example runs in seconds. It checks what it shows: the test
//! loss falls, the accuracy rises well above chance, and the saved
//! state_dict reloads into a model that predicts exactly the same.
//!
//! Run: `cargo run --release -p ember-nn-std --example seed_cnn`

use ember_nn_core::nn::loss::{cross_entropy, Reduction};
use ember_nn_core::nn::{
    summary, Build, Conv2d, Forward, Linear, MaxPool2d, Module, Optimizer, Rule,
};
use ember_nn_core::prelude::*;
use ember_nn_std::data::{DataLoader, Dataset, Split, TensorDataset};
use ember_nn_std::{state_dict, Parallel};

#[path = "support/fashion.rs"]
mod fashion;
use fashion::fashion_mnist;

/// `class Net(nn.Module)`.
#[derive(Module)]
struct Net {
    conv1: Conv2d<1, 6, 5>,
    pool: MaxPool2d<2, 2>,
    conv2: Conv2d<6, 16, 5>,
    fc1: Linear<256, 120>,
    fc2: Linear<120, 84>,
    fc3: Linear<84, 10>,
}

type Images<'t, B> = Tensor<'t, (usize, Const<1>, Const<28>, Const<28>), B>;

impl<'t, B: Backend> Forward<Images<'t, B>> for Net {
    type Output = Tensor<'t, (usize, Const<10>), B>;
    fn forward(&self, x: Images<'t, B>) -> Self::Output {
        let x = self.pool.forward(self.conv1.forward(x).relu());
        let x = self.pool.forward(self.conv2.forward(x).relu());
        let x = x.flatten::<256>(); // torch.flatten(x, 1)
        let x = self.fc1.forward(x).relu();
        let x = self.fc2.forward(x).relu();
        self.fc3.forward(x)
    }
}

const BATCH_SIZE: usize = 64;
/// Floats for the parameters, their gradients and momentum, a reloaded
/// copy, and a batch-64 step's graph (measured: `Graph::peak` is printed
/// below). A convolution's scratch depends on the image size, which its
/// type does not hold, so `nn::train_floats` does not size it.
const FLOATS: usize = 5 << 20;

fn images(n: usize, features: &[f32]) -> (usize, Const<1>, Const<28>, Const<28>) {
    debug_assert_eq!(features.len(), n * 784);
    (n, Const, Const, Const)
}

/// One epoch; the largest graph of a step, in floats.
fn train<B: Backend>(
    loader: &mut DataLoader<TensorDataset>,
    model: &Net,
    mem: &mut Memory<'_, B>,
    optimizer: &mut Optimizer,
) -> Result<usize> {
    let mut peak = 0;
    for (i, b) in loader.iter().enumerate() {
        optimizer.zero_grad(mem)?;
        let loss = {
            let g = Graph::new(mem);
            let x = g.from_slice(images(b.len(), &b.features), &b.features);
            let loss = cross_entropy(model.forward(x), &b.labels, Reduction::Mean);
            loss.backward()?;
            peak = peak.max(g.peak());
            loss.item()?
        };
        optimizer.step(mem)?;
        if i % 25 == 0 {
            println!("[{:5}] loss: {loss:.3}", (i + 1) * b.len());
        }
    }
    Ok(peak)
}

/// The mean test loss and the accuracy.
fn test<B: Backend>(
    loader: &mut DataLoader<TensorDataset>,
    model: &Net,
    mem: &mut Memory<'_, B>,
) -> Result<(f32, f32)> {
    let (size, batches) = (loader.dataset().len(), loader.len());
    let (mut loss, mut correct) = (0.0f32, 0usize);
    let mut pred = [0.0f32; BATCH_SIZE];
    for b in loader.iter() {
        let n = b.len();
        let g = Graph::new(mem);
        g.no_grad(|| -> Result<()> {
            let logits = model.forward(g.from_slice(images(n, &b.features), &b.features));
            loss += cross_entropy(logits, &b.labels, Reduction::Mean).item()?;
            logits.argmax_axis::<1>().read(&mut pred[..n])?;
            Ok(())
        })?;
        correct += pred[..n]
            .iter()
            .zip(&b.labels)
            .filter(|(p, y)| **p as usize == **y)
            .count();
    }
    let (loss, accuracy) = (loss / batches as f32, correct as f32 / size as f32);
    println!(
        "Accuracy of the network on the {size} test images: {:.1} % (loss {loss:.4})",
        100.0 * accuracy
    );
    Ok((loss, accuracy))
}

fn main() -> Result<()> {
    let mut trainloader = DataLoader::new(fashion_mnist(Split::Train, 6000)?, BATCH_SIZE)
        .shuffle(true)
        .seed(0);
    let mut testloader = DataLoader::new(fashion_mnist(Split::Test, 1000)?, BATCH_SIZE);

    let device = Parallel::new(0);
    let mut buf = vec![0.0f32; FLOATS];
    let mut mem = Memory::new(&device, &mut buf[..]);
    let net = Net::build(&mut mem, &mut Rng::new(0))?;
    println!("{}", summary(&net));
    println!("{} parameters", net.param_count());

    // criterion = nn.CrossEntropyLoss()
    // optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    let mut optimizer: Optimizer = Optimizer::new(&mut mem, &net, Rule::sgd_momentum(0.9), 0.01)?;
    let (loss0, acc0) = test(&mut testloader, &net, &mut mem)?;
    let mut last = (loss0, acc0);
    for epoch in 0..3 {
        println!("Epoch {}", epoch + 1);
        let peak = train(&mut trainloader, &net, &mut mem, &mut optimizer)?;
        println!("a step's graph peaked at {peak} floats");
        last = test(&mut testloader, &net, &mut mem)?;
    }
    println!("Finished Training");
    assert!(last.0 < loss0 * 0.5, "test loss {loss0} -> {}", last.0);
    assert!(
        last.1 > 0.6 && last.1 > acc0 + 0.4,
        "accuracy {acc0} -> {}",
        last.1
    );

    // torch.save(net.state_dict(), PATH); net = Net(); net.load_state_dict(torch.load(PATH))
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("cnn.safetensors");
    state_dict::save(&path, &net, &mem).expect("saved");
    let loaded = Net::build(&mut mem, &mut Rng::new(1))?;
    state_dict::load(&path, &loaded, &mut mem).expect("loaded");
    let sample = testloader.dataset().get(0).unwrap();
    let (mut a, mut b) = ([0.0f32; 10], [0.0f32; 10]);
    {
        let g = Graph::new(&mut mem);
        let x = g.from_slice(images(1, sample.features), sample.features);
        net.forward(x).read(&mut a)?;
        loaded.forward(x).read(&mut b)?;
    }
    assert_eq!(
        a.map(f32::to_bits),
        b.map(f32::to_bits),
        "the reloaded model is the trained one"
    );
    println!("saved and reloaded: the same outputs, bit for bit");
    Ok(())
}
