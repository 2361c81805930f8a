//! Initialisers with PyTorch's definitions of fan-in / fan-out and gain.
//!
//! Fans follow `torch.nn.init._calculate_fan_in_and_fan_out`: for a weight of shape
//! `[out, in, k...]`, fan_in = in * prod(k) and fan_out = out * prod(k).

use ndarray::IxDyn;

use crate::float::Float;
use crate::rng::{Rng, standard_normal, uniform};
use crate::tape::Tensor;

/// Which fan a Kaiming initialiser preserves the variance of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fan {
    In,
    Out,
}

/// (fan_in, fan_out) of a weight shape.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    assert!(shape.len() >= 2, "fans need a weight of rank >= 2, got {shape:?}");
    let receptive: usize = shape[2..].iter().product();
    (shape[1] * receptive, shape[0] * receptive)
}

/// Gain of a leaky-relu with negative slope `a` (`calculate_gain('leaky_relu', a)`); a = 0 is relu.
pub fn leaky_relu_gain(a: f64) -> f64 {
    (2.0 / (1.0 + a * a)).sqrt()
}

fn fill<F: Float>(shape: &[usize], mut sample: impl FnMut() -> f64) -> Tensor<F> {
    Tensor::from_shape_simple_fn(IxDyn(shape), || F::c(sample()))
}

/// U(-bound, bound).
pub fn uniform_init<F: Float>(shape: &[usize], bound: f64, rng: &mut Rng) -> Tensor<F> {
    fill(shape, || uniform(rng, -bound, bound))
}

/// N(0, std^2).
pub fn normal_init<F: Float>(shape: &[usize], std: f64, rng: &mut Rng) -> Tensor<F> {
    fill(shape, || std * standard_normal(rng))
}

/// Constant fill.
pub fn constant<F: Float>(shape: &[usize], value: f64) -> Tensor<F> {
    Tensor::from_elem(IxDyn(shape), F::c(value))
}

fn fan(shape: &[usize], mode: Fan) -> f64 {
    let (fan_in, fan_out) = fans(shape);
    (if mode == Fan::In { fan_in } else { fan_out }) as f64
}

/// `kaiming_uniform_(w, a, mode)`: bound = gain * sqrt(3 / fan).
pub fn kaiming_uniform<F: Float>(shape: &[usize], a: f64, mode: Fan, rng: &mut Rng) -> Tensor<F> {
    uniform_init(shape, leaky_relu_gain(a) * (3.0 / fan(shape, mode)).sqrt(), rng)
}

/// `kaiming_normal_(w, a, mode)`: std = gain / sqrt(fan).
pub fn kaiming_normal<F: Float>(shape: &[usize], a: f64, mode: Fan, rng: &mut Rng) -> Tensor<F> {
    normal_init(shape, leaky_relu_gain(a) / fan(shape, mode).sqrt(), rng)
}

/// `xavier_uniform_(w, gain)`: bound = gain * sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform<F: Float>(shape: &[usize], gain: f64, rng: &mut Rng) -> Tensor<F> {
    let (fan_in, fan_out) = fans(shape);
    uniform_init(shape, gain * (6.0 / (fan_in + fan_out) as f64).sqrt(), rng)
}

/// `xavier_normal_(w, gain)`: std = gain * sqrt(2 / (fan_in + fan_out)).
pub fn xavier_normal<F: Float>(shape: &[usize], gain: f64, rng: &mut Rng) -> Tensor<F> {
    let (fan_in, fan_out) = fans(shape);
    normal_init(shape, gain * (2.0 / (fan_in + fan_out) as f64).sqrt(), rng)
}

/// PyTorch's default for Linear and Conv2d layers: weight kaiming_uniform with a = sqrt(5)
/// (bound 1/sqrt(fan_in)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Returns (weight, bias).
pub fn torch_default_layer<F: Float>(shape: &[usize], rng: &mut Rng) -> (Tensor<F>, Tensor<F>) {
    let weight = kaiming_uniform(shape, 5f64.sqrt(), Fan::In, rng);
    let bound = 1.0 / (fans(shape).0 as f64).sqrt();
    let bias = uniform_init(&[shape[0]], bound, rng);
    (weight, bias)
}
