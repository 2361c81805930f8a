//! Every op family under `Dual64`: the Hessian-vector product of `sum(u * op(x)^2)` (u random,
//! positive) from forward-over-reverse against central differences of the `f64` tape gradient
//! (step 1e-5), with respect to every input at once. Squaring makes even linear ops have a
//! non-zero Hessian, so an op that dropped or mangled the tangent would fail here. Values are
//! kept 0.05 from every kink and ties, as in the gradient checks.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::RngCore;
use sparsegrad::check::strategies::away_from;
use sparsegrad::dual::Dual64;
use sparsegrad::float::Float;
use sparsegrad::hvp::hvp;
use sparsegrad::ops::conv::Conv2dConfig;
use sparsegrad::rng::{Rng, seeded, standard_normal, uniform};
use sparsegrad::tape::{Tape, Tensor, Var};

use crate::common::proptest_config;

const STEP: f64 = 1e-5;

/// `sum(u * y^2)` with `u` uniform in [0.5, 1.5) drawn from `seed` (the same for both types).
fn score<'t, F: Float>(y: Var<'t, F>, seed: u64) -> Var<'t, F> {
    let mut rng = seeded(seed);
    let u = ArrayD::from_shape_simple_fn(IxDyn(&y.shape()), || uniform(&mut rng, 0.5, 1.5));
    (y * y * konst(y, &u)).sum()
}

/// An `f64` array as a constant on `like`'s tape, in its element type.
fn konst<'t, F: Float>(like: Var<'t, F>, t: &Tensor<f64>) -> Var<'t, F> {
    like.tape().constant(arr(like, t))
}

/// An `f64` array in `like`'s element type.
fn arr<F: Float>(_like: Var<'_, F>, t: &Tensor<f64>) -> Tensor<F> {
    t.mapv(F::c)
}

fn gradient<G>(f: &G, at: &[Tensor<f64>]) -> Vec<Tensor<f64>>
where
    G: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::<f64>::new();
    let leaves: Vec<_> = at.iter().map(|x| tape.leaf(x.clone())).collect();
    let grads = f(&leaves).backward();
    leaves
        .iter()
        .zip(at)
        .map(|(l, x)| {
            grads
                .wrt(*l)
                .cloned()
                .unwrap_or_else(|| Tensor::zeros(x.raw_dim()))
        })
        .collect()
}

/// Checks one op: dual `H v` against `(∇f(x + h v) - ∇f(x - h v)) / 2h`, every input moved.
fn check<G, D>(name: &str, f64_fn: G, dual_fn: D, at: &[Tensor<f64>], rng: &mut Rng)
where
    G: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
    D: for<'t> FnOnce(&[Var<'t, Dual64>]) -> Var<'t, Dual64>,
{
    let v: Vec<Tensor<f64>> = at
        .iter()
        .map(|x| x.mapv(|_| standard_normal(rng)))
        .collect();
    let out = hvp(dual_fn, at, &v).unwrap_or_else(|e| panic!("{name}: {e}"));
    let moved = |h: f64| -> Vec<Tensor<f64>> {
        let x: Vec<_> = at.iter().zip(&v).map(|(x, d)| x + &(d * h)).collect();
        gradient(&f64_fn, &x)
    };
    let (up, down, g) = (moved(STEP), moved(-STEP), gradient(&f64_fn, at));
    let (mut diff, mut scale, mut grad_diff) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..at.len() {
        for (((&hv, &u), &d), (&gd, &gr)) in out.hv[i]
            .iter()
            .zip(&up[i])
            .zip(&down[i])
            .zip(out.grad[i].iter().zip(&g[i]))
        {
            let fd = (u - d) / (2.0 * STEP);
            diff = diff.max((hv - fd).abs());
            scale = scale.max(fd.abs());
            grad_diff = grad_diff.max((gd - gr).abs() / (1.0 + gr.abs()));
        }
    }
    assert!(
        diff <= 1e-6 * (1.0 + scale),
        "{name}: |H v - differences| = {diff:e} (scale {scale:e})"
    );
    assert!(
        grad_diff <= 1e-12,
        "{name}: gradient differs by {grad_diff:e}"
    );
}

/// One op: `|x| body` becomes `score(body)` on both element types.
macro_rules! op {
    ($rng:expr, $name:expr, $at:expr, |$x:ident| $body:expr) => {{
        let seed = $rng.next_u64();
        check(
            $name,
            |$x| score($body, seed),
            |$x| score($body, seed),
            $at,
            $rng,
        )
    }};
}

fn draw(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng) -> Tensor<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || uniform(rng, lo, hi))
}

/// Values in [-2, 2) at least 0.05 from every kink the elementwise ops have.
fn smooth(shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    draw(shape, -2.0, 2.0, rng).mapv(|v| away_from(v, &[-1.0, -0.5, 0.0, 0.5, 1.0], 0.05))
}

/// Pairwise distinct values (a shuffled grid of spacing 0.1 plus noise below 0.05): no ties.
fn distinct(shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let values = order
        .iter()
        .map(|&k| 0.1 * k as f64 - 0.1 * n as f64 / 2.0 + uniform(rng, 0.0, 0.05));
    ArrayD::from_shape_vec(IxDyn(shape), values.collect()).expect("size")
}

/// `[x, gamma, beta]` with each beta moved by the first multiple of 0.1 that keeps every
/// normalised value of its channel 0.05 from zero (the relu's kink).
fn beta_away_from_kink(bn: &[Tensor<f64>; 3]) -> [Tensor<f64>; 3] {
    let tape = Tape::<f64>::new();
    let (x, gamma) = (tape.leaf(bn[0].clone()), tape.leaf(bn[1].clone()));
    let (normalised, _) = x.batch_norm_train(Some(gamma), None, 1e-5);
    let normalised = normalised.value();
    let mut beta = bn[2].clone();
    for (c, b) in beta.iter_mut().enumerate() {
        let channel = normalised.index_axis(ndarray::Axis(1), c);
        *b += (0..)
            .map(|k| 0.1 * f64::from(k))
            .find(|shift| channel.iter().all(|&v| (v + *b + shift).abs() >= 0.05))
            .expect("a finite channel has a shift that avoids it");
    }
    [bn[0].clone(), bn[1].clone(), beta]
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn elementwise_ops_have_exact_hessian_vector_products(r in 1..4usize, c in 1..4usize, seed: u64) {
        let rng = &mut seeded(seed);
        let x = [smooth(&[r, c], rng)];
        let pos = [draw(&[r, c], 0.2, 2.0, rng)];
        op!(rng, "neg", &x, |x| x[0].neg());
        op!(rng, "add_scalar", &x, |x| x[0].add_scalar(0.3));
        op!(rng, "mul_scalar", &x, |x| x[0].mul_scalar(-1.7));
        op!(rng, "exp", &x, |x| x[0].exp());
        op!(rng, "ln", &pos, |x| x[0].ln());
        op!(rng, "sqrt", &pos, |x| x[0].sqrt());
        op!(rng, "powf", &pos, |x| x[0].powf(2.5));
        op!(rng, "abs", &x, |x| x[0].abs());
        op!(rng, "sign", &x, |x| x[0].sign() * x[0]);
        op!(rng, "relu", &x, |x| x[0].relu());
        op!(rng, "leaky_relu", &x, |x| x[0].leaky_relu(0.1));
        op!(rng, "sigmoid", &x, |x| x[0].sigmoid());
        op!(rng, "tanh", &x, |x| x[0].tanh());
        op!(rng, "softplus", &x, |x| x[0].softplus());
        op!(rng, "clamp", &x, |x| x[0].clamp(-0.5, 0.5));
        op!(rng, "hardtanh", &x, |x| x[0].hardtanh());
        // Binary ops, the second operand broadcast along rows.
        let ab = [smooth(&[r, c], rng), draw(&[c], 0.3, 2.0, rng)];
        op!(rng, "add", &ab, |x| x[0] + x[1]);
        // relu(1.5 x): at least 0.075 from its kink.
        op!(rng, "add_relu", &[x[0].clone(), x[0].mapv(|v| 0.5 * v)], |x| x[0].add_relu(x[1]));
        op!(rng, "sub", &ab, |x| x[0] - x[1]);
        op!(rng, "mul", &ab, |x| x[0] * x[1]);
        op!(rng, "div", &ab, |x| x[0] / x[1]);
        op!(rng, "pow", &[pos[0].clone(), ab[0].clone()], |x| x[0].pow(x[1]));
        let a = distinct(&[r, c], rng);
        let b = &a + &draw(&[r, c], 0.1, 0.5, rng).mapv(|d| if rng.next_u32().is_multiple_of(2) { d } else { -d });
        op!(rng, "maximum", &[a, b], |x| x[0].maximum(x[1]));
    }

    #[test]
    fn reductions_and_shape_ops_have_exact_hessian_vector_products(r in 1..4usize, c in 2..5usize, seed: u64) {
        let rng = &mut seeded(seed);
        let x = [distinct(&[r, c], rng)];
        op!(rng, "sum_axes", &x, |x| x[0].sum_axes(&[1], true).tanh());
        op!(rng, "mean_axes", &x, |x| x[0].mean_axes(&[0], false).tanh());
        op!(rng, "mean", &x, |x| (x[0] * x[0]).mean());
        op!(rng, "max_axis", &x, |x| x[0].max_axis(1, false));
        op!(rng, "max", &x, |x| x[0].max());
        op!(rng, "logsumexp", &x, |x| x[0].logsumexp(1, false));
        op!(rng, "softmax", &x, |x| x[0].softmax(1));
        op!(rng, "log_softmax", &x, |x| x[0].log_softmax(0));
        // The second input is distinct: `index_select` multiplies by its max, and two values
        // closer than the step would swap the arg-max between the moved points (seen once).
        let y = [draw(&[2, r, c], -1.0, 1.0, rng), distinct(&[2, r, c], rng)];
        op!(rng, "reshape", &y, |x| x[0].reshape(&[2 * r, c]) * x[1].flatten(0).reshape(&[2 * r, c]).tanh());
        op!(rng, "permute", &y, |x| x[0].permute(&[2, 0, 1]) * x[1].transpose(0, 2).transpose(1, 2).sigmoid());
        op!(rng, "slice", &y, |x| (x[0] * x[1]).slice(2, 0, c, 2).narrow(1, 0, r).pad(0, 1, 2));
        op!(rng, "concat", &y, |x| Var::concat(&[x[0], x[1].exp()], 1));
        op!(rng, "stack", &y, |x| Var::stack(&[x[0].tanh(), x[1]], 3) * x[0].sum());
        op!(rng, "broadcast_to", &y, |x| x[0].sum_axes(&[0], false).broadcast_to(&[3, r, c]) * x[1].sum());
        op!(rng, "index_select", &y, |x| x[0].index_select(2, &[c - 1, 0, c - 1]) * x[1].max());
        let index = ArrayD::from_shape_fn(IxDyn(&[2, r, 3]), |i| (i[1] + 2 * i[2]) % c);
        op!(rng, "gather", &y, |x| x[0].gather(2, &index) * x[1].gather(2, &index).exp());
    }

    #[test]
    fn matmul_losses_conv_pool_and_norm_have_exact_hessian_vector_products(
        m in 1..4usize, k in 1..4usize, n in 2..4usize, seed: u64,
    ) {
        let rng = &mut seeded(seed);
        let mk = [draw(&[m, k], -1.0, 1.0, rng), draw(&[k, n], -1.0, 1.0, rng), draw(&[n, k], -1.0, 1.0, rng)];
        op!(rng, "matmul", &mk, |x| x[0].matmul(x[1]).tanh());
        op!(rng, "matmul_nt", &mk, |x| x[0].matmul_nt(x[2]).sigmoid());
        let affine = [mk[0].clone(), mk[2].clone(), draw(&[n], -1.0, 1.0, rng)];
        op!(rng, "linear", &affine, |x| x[0].linear(x[1], Some(x[2])).tanh());
        let batched = [draw(&[2, m, k], -1.0, 1.0, rng), draw(&[2, k, n], -1.0, 1.0, rng)];
        op!(rng, "bmm", &batched, |x| x[0].bmm(x[1]));
        let logits = [draw(&[m, n], -2.0, 2.0, rng), draw(&[m, n], -2.0, 2.0, rng)];
        let labels: Vec<usize> = (0..m).map(|i| (i + seed as usize) % n).collect();
        op!(rng, "cross_entropy", &logits, |x| (x[0] * x[1]).cross_entropy(&labels, 0.1));
        op!(rng, "kl_div_logits", &logits, |x| x[0].kl_div_logits(x[1], 2.0));
        op!(rng, "mse", &logits, |x| x[0].tanh().mse(x[1]));
        // Grouped, strided, padded convolution: Hessian blocks of input, weight and bias.
        let conv = [draw(&[2, 4, 5, 4], -1.0, 1.0, rng), draw(&[6, 2, 3, 2], -1.0, 1.0, rng), draw(&[6], -1.0, 1.0, rng)];
        let cfg = Conv2dConfig { stride: [2, 1], padding: [1, 1], groups: 2, ..Conv2dConfig::default() };
        op!(rng, "conv2d", &conv, |x| x[0].conv2d(x[1], Some(x[2]), &cfg).tanh());
        let image = [distinct(&[2, 2, 5, 4], rng).mapv(|v| v / 4.0)];
        op!(rng, "max_pool2d", &image, |x| x[0].max_pool2d([3, 2], [2, 1], [1, 1]));
        op!(rng, "avg_pool2d", &image, |x| x[0].avg_pool2d([3, 3], [2, 2], [1, 1]) * x[0].mean());
        op!(rng, "global_avg_pool2d", &image, |x| x[0].global_avg_pool2d().tanh());
        let bn = [draw(&[m + 1, 3, 2, 2], -1.0, 1.0, rng), draw(&[3], 0.5, 1.5, rng), draw(&[3], -1.0, 1.0, rng)];
        op!(rng, "batch_norm_train", &bn, |x| x[0].batch_norm_train(Some(x[1]), Some(x[2]), 1e-5).0.tanh());
        op!(rng, "batch_norm_train_relu", &beta_away_from_kink(&bn), |x| x[0].batch_norm_train_relu(Some(x[1]), Some(x[2]), 1e-5).0 * x[0]);
        op!(rng, "batch_norm_train 2-D", &[draw(&[m + 3, 3], -1.0, 1.0, rng)], |x| x[0].batch_norm_train(None, None, 1e-5).0.sigmoid());
        let (mean, var) = (draw(&[3], -0.5, 0.5, rng), draw(&[3], 0.5, 2.0, rng));
        op!(rng, "batch_norm_eval", &bn, |x| x[0].batch_norm_eval(&arr(x[0], &mean), &arr(x[0], &var), Some(x[1]), Some(x[2]), 1e-5).tanh());
        op!(rng, "dropout", &bn, |x| x[0].dropout(0.3, &mut seeded(7)).tanh());
    }
}
