// A convolution's scratch depends on its input's height and width, which
// its type does not hold: a training budget of a CNN is refused at compile
// time with the reason, never a wrong number.
use ember_nn_core::nn::{self, loss::Loss, Conv2d, Flatten, Linear, ReLU, Rule};

type Cnn = (Conv2d<1, 4, 3>, ReLU, Flatten<144>, Linear<144, 10>);
const BUDGET: nn::TrainBudget = nn::train_budget::<Cnn>(8, Loss::CrossEntropy, Rule::sgd());

fn main() {
    let _ = BUDGET;
}
