//! Activation codes: the hidden activations of dense layers, as the
//! deployment format stores them (`deploy` re-exports [`Activation`]) and as
//! the models and backends name them. Part of the vocabulary the backends share.

/// An activation as the format stores it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// None (the identity).
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// Logistic sigmoid.
    Sigmoid,
    /// `tanh`.
    Tanh,
    /// Leaky ReLU with this negative slope.
    LeakyRelu(f32),
    /// ELU with this α.
    Elu(f32),
    /// SELU.
    Selu,
    /// SiLU.
    Silu,
    /// GELU (erf).
    Gelu,
    /// GELU (tanh approximation).
    GeluTanh,
    /// Softsign.
    Softsign,
    /// Softplus.
    Softplus,
}

impl Activation {
    /// The code stored in the file and the activation's parameter.
    pub fn encode(self) -> (u8, f32) {
        match self {
            Activation::Identity => (0, 0.0),
            Activation::Relu => (1, 0.0),
            Activation::Sigmoid => (2, 0.0),
            Activation::Tanh => (3, 0.0),
            Activation::LeakyRelu(s) => (4, s),
            Activation::Elu(a) => (5, a),
            Activation::Selu => (6, 0.0),
            Activation::Silu => (7, 0.0),
            Activation::Gelu => (8, 0.0),
            Activation::GeluTanh => (9, 0.0),
            Activation::Softsign => (10, 0.0),
            Activation::Softplus => (11, 0.0),
        }
    }

    /// The activation for a stored code, if the code is known.
    pub fn decode(code: u8, param: f32) -> Option<Self> {
        Some(match code {
            0 => Activation::Identity,
            1 => Activation::Relu,
            2 => Activation::Sigmoid,
            3 => Activation::Tanh,
            4 => Activation::LeakyRelu(param),
            5 => Activation::Elu(param),
            6 => Activation::Selu,
            7 => Activation::Silu,
            8 => Activation::Gelu,
            9 => Activation::GeluTanh,
            10 => Activation::Softsign,
            11 => Activation::Softplus,
            _ => return None,
        })
    }

    /// The same function the training graph uses ([`Map::apply`](super::Map::apply)
    /// evaluates the same helpers), without linking the other elementwise functions.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        use super::map::act;
        match self {
            Activation::Identity => x,
            Activation::Relu => act::relu(x),
            Activation::Sigmoid => act::sigmoid(x),
            Activation::Tanh => act::tanh(x),
            Activation::LeakyRelu(s) => act::leaky_relu(s, x),
            Activation::Elu(a) => act::elu(a, x),
            Activation::Selu => act::selu(x),
            Activation::Silu => act::silu(x),
            Activation::Gelu => act::gelu_erf(x),
            Activation::GeluTanh => act::gelu_tanh(x),
            Activation::Softsign => act::softsign(x),
            Activation::Softplus => act::softplus(x),
        }
    }
}
