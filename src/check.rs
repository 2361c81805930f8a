//! Gradient checking in `f64` by central differences, in the style of PyTorch's `gradcheck`
//! (eps 1e-6, atol 1e-5, rtol 1e-3), plus `proptest` strategies for shapes and values.
//!
//! Two modes, chosen by size:
//! - **full Jacobian** when `inputs x outputs` is small: every analytic row (one backward per
//!   output element) against every numeric column (two forwards per input element);
//! - **random projections** otherwise: for random `u` (output-shaped) and `v` (input-shaped),
//!   `<J^T u, v>` from one backward against `<u, (f(x + eps v) - f(x - eps v)) / 2 eps>`, per input.
//!
//! Either way the report names the worst element: which input, where, analytic vs numeric.
//!
//! ```
//! use sparsegrad::check::{gradcheck, CheckOptions};
//! use ndarray::array;
//! let x = array![[0.3, -1.2], [2.0, 0.7]].into_dyn();
//! let report = gradcheck(|v| v[0].tanh().sum(), &[x], &CheckOptions::default()).unwrap();
//! assert!(report.worst_error_ratio < 1.0);
//! ```

use ndarray::{ArrayD, Dimension, IxDyn, Zip};
use crate::rng::{seeded, standard_normal};

use crate::tape::{Tape, Tensor, Var};

/// Tolerances and mode selection. Defaults follow PyTorch's gradcheck.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Use the full Jacobian when (input elements) x (output elements) is at most this.
    pub full_jacobian_limit: usize,
    /// Random projections per input in projection mode.
    pub projections: usize,
    /// Seed of the projection directions.
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            full_jacobian_limit: 20_000,
            projections: 4,
            seed: 0,
        }
    }
}

/// Which comparison a check made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMode {
    FullJacobian,
    Projection,
}

/// One analytic/numeric comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Which input (position in the `inputs` slice).
    pub input: usize,
    /// Element of that input (full mode) or projection number (projection mode) as `[k]`.
    pub input_index: Vec<usize>,
    /// Output element (full mode only).
    pub output_index: Option<Vec<usize>>,
    pub analytic: f64,
    pub numeric: f64,
}

impl Comparison {
    /// |analytic - numeric| / (atol + rtol |numeric|): at most 1 passes.
    pub fn error_ratio(&self, opts: &CheckOptions) -> f64 {
        let err = (self.analytic - self.numeric).abs();
        if err.is_nan() {
            return f64::INFINITY;
        }
        err / (opts.atol + opts.rtol * self.numeric.abs())
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "input {} at {:?}", self.input, self.input_index)?;
        if let Some(o) = &self.output_index {
            write!(f, ", output {o:?}")?;
        }
        write!(
            f,
            ": analytic {:.9e} vs numeric {:.9e}",
            self.analytic, self.numeric
        )
    }
}

/// Result of a passing check.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub mode: CheckMode,
    /// Number of comparisons made.
    pub compared: usize,
    /// The largest error ratio seen (at most 1 for a pass).
    pub worst_error_ratio: f64,
    pub worst: Option<Comparison>,
}

/// A failing check, naming the worst element.
#[derive(Debug, thiserror::Error)]
#[error(
    "gradient check failed ({mode:?}, {compared} comparisons): worst {worst} (error ratio {ratio:.3} > 1)"
)]
pub struct GradcheckError {
    pub mode: CheckMode,
    pub compared: usize,
    pub worst: Comparison,
    pub ratio: f64,
}

fn evaluate<Func>(f: &Func, inputs: &[Tensor<f64>]) -> Tensor<f64>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::<f64>::new();
    let _no_grad = tape.no_grad();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    (*f(&vars).value()).clone()
}

/// `J^T seed`, one array per input (zeros where the output does not depend on an input).
fn vector_jacobian<Func>(f: &Func, inputs: &[Tensor<f64>], seed: &Tensor<f64>) -> Vec<Tensor<f64>>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let tape = Tape::<f64>::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&vars);
    assert_eq!(
        out.shape(),
        seed.shape(),
        "gradcheck: the function's output shape changed between calls"
    );
    let grads = out.backward_with(seed.clone());
    vars.iter()
        .zip(inputs)
        .map(|(v, x)| {
            grads
                .wrt(*v)
                .cloned()
                .unwrap_or_else(|| Tensor::zeros(x.raw_dim()))
        })
        .collect()
}

/// Checks the analytic gradient of `f` at `inputs` against central differences.
/// `f` receives one leaf per input and may return any shape.
pub fn gradcheck<Func>(
    f: Func,
    inputs: &[Tensor<f64>],
    opts: &CheckOptions,
) -> Result<CheckReport, GradcheckError>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let out_shape = evaluate(&f, inputs).raw_dim();
    let n_out = out_shape.size();
    let n_in: usize = inputs.iter().map(|x| x.len()).sum();
    let (mode, comparisons) = if n_in * n_out <= opts.full_jacobian_limit {
        (
            CheckMode::FullJacobian,
            full_jacobian(&f, inputs, &out_shape, opts),
        )
    } else {
        (
            CheckMode::Projection,
            projections(&f, inputs, &out_shape, opts),
        )
    };
    let compared = comparisons.len();
    let worst = comparisons
        .into_iter()
        .map(|c| (c.error_ratio(opts), c))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match worst {
        Some((ratio, worst)) if ratio > 1.0 => Err(GradcheckError {
            mode,
            compared,
            worst,
            ratio,
        }),
        Some((ratio, worst)) => Ok(CheckReport {
            mode,
            compared,
            worst_error_ratio: ratio,
            worst: Some(worst),
        }),
        None => Ok(CheckReport {
            mode,
            compared,
            worst_error_ratio: 0.0,
            worst: None,
        }),
    }
}

fn full_jacobian<Func>(
    f: &Func,
    inputs: &[Tensor<f64>],
    out_shape: &IxDyn,
    opts: &CheckOptions,
) -> Vec<Comparison>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let n_out = out_shape.size();
    // Analytic Jacobian rows: rows[o][i] = d out[o] / d inputs[i].
    let rows: Vec<Vec<Tensor<f64>>> = (0..n_out)
        .map(|o| {
            let mut seed = Tensor::<f64>::zeros(out_shape.clone());
            seed.as_slice_mut().expect("standard layout")[o] = 1.0;
            vector_jacobian(f, inputs, &seed)
        })
        .collect();
    let mut out = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let x = x.as_standard_layout().into_owned();
        for (e, (idx, _)) in x.indexed_iter().enumerate() {
            let column = numeric_difference(
                f,
                inputs,
                i,
                |t| {
                    t.as_slice_mut().expect("standard layout")[e] += opts.eps;
                },
                |t| {
                    t.as_slice_mut().expect("standard layout")[e] -= opts.eps;
                },
                opts.eps,
            );
            for (o, (out_idx, &numeric)) in column.indexed_iter().enumerate() {
                out.push(Comparison {
                    input: i,
                    input_index: idx.slice().to_vec(),
                    output_index: Some(out_idx.slice().to_vec()),
                    analytic: rows[o][i]
                        .as_standard_layout()
                        .as_slice()
                        .expect("standard")[e],
                    numeric,
                });
            }
        }
    }
    out
}

fn projections<Func>(
    f: &Func,
    inputs: &[Tensor<f64>],
    out_shape: &IxDyn,
    opts: &CheckOptions,
) -> Vec<Comparison>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let mut rng = seeded(opts.seed);
    let mut out = Vec::new();
    for k in 0..opts.projections {
        let u = ArrayD::from_shape_simple_fn(out_shape.clone(), || standard_normal(&mut rng));
        let jt_u = vector_jacobian(f, inputs, &u);
        for (i, x) in inputs.iter().enumerate() {
            let v = ArrayD::from_shape_simple_fn(x.raw_dim(), || standard_normal(&mut rng));
            let diff = numeric_difference(
                f,
                inputs,
                i,
                |t| t.scaled_add(opts.eps, &v),
                |t| t.scaled_add(-opts.eps, &v),
                opts.eps,
            );
            out.push(Comparison {
                input: i,
                input_index: vec![k],
                output_index: None,
                analytic: Zip::from(&jt_u[i]).and(&v).fold(0.0, |s, &a, &b| s + a * b),
                numeric: Zip::from(&u).and(&diff).fold(0.0, |s, &a, &b| s + a * b),
            });
        }
    }
    out
}

/// (f(x with input i moved up) - f(x with input i moved down)) / (2 eps).
fn numeric_difference<Func>(
    f: &Func,
    inputs: &[Tensor<f64>],
    i: usize,
    up: impl Fn(&mut Tensor<f64>),
    down: impl Fn(&mut Tensor<f64>),
    eps: f64,
) -> Tensor<f64>
where
    Func: for<'t> Fn(&[Var<'t, f64>]) -> Var<'t, f64>,
{
    let mut moved: Vec<Tensor<f64>> = inputs
        .iter()
        .map(|x| x.as_standard_layout().into_owned())
        .collect();
    up(&mut moved[i]);
    let plus = evaluate(f, &moved);
    moved[i] = inputs[i].as_standard_layout().into_owned();
    down(&mut moved[i]);
    let minus = evaluate(f, &moved);
    (plus - minus) / (2.0 * eps)
}

/// `proptest` strategies for gradient checks: shapes, broadcast-compatible shape pairs, and
/// tensors whose values keep a margin from an op's kinks.
pub mod strategies {
    use ndarray::{ArrayD, IxDyn};
    use proptest::prelude::*;

    use crate::tape::Tensor;

    /// A shape of rank `1..=max_rank` with each dimension in `1..=max_dim`.
    pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1..=max_dim, 1..=max_rank)
    }

    /// A tensor of the given shape with values uniform in `[lo, hi)`.
    pub fn tensor(shape: Vec<usize>, lo: f64, hi: f64) -> impl Strategy<Value = Tensor<f64>> {
        let n = shape.iter().product::<usize>();
        proptest::collection::vec(lo..hi, n)
            .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("size matches"))
    }

    /// Like [`tensor`], with every value at least `margin` away from each point in `kinks`
    /// (values inside a margin are pushed to its nearer edge), so central differences never
    /// straddle a kink.
    pub fn tensor_away_from(
        shape: Vec<usize>,
        lo: f64,
        hi: f64,
        kinks: Vec<f64>,
        margin: f64,
    ) -> impl Strategy<Value = Tensor<f64>> {
        tensor(shape, lo, hi).prop_map(move |t| t.mapv(|v| away_from(v, &kinks, margin)))
    }

    /// `v` moved out of the open `margin`-neighbourhood of every kink.
    pub fn away_from(mut v: f64, kinks: &[f64], margin: f64) -> f64 {
        for &k in kinks {
            if (v - k).abs() < margin {
                v = if v >= k { k + margin } else { k - margin };
            }
        }
        v
    }

    /// A shape with a tensor of it, values uniform in `[lo, hi)`.
    pub fn shaped_tensor(
        max_rank: usize,
        max_dim: usize,
        lo: f64,
        hi: f64,
    ) -> impl Strategy<Value = Tensor<f64>> {
        shape(max_rank, max_dim).prop_flat_map(move |s| tensor(s, lo, hi))
    }

    /// Two shapes that broadcast together in the numpy sense: a common shape from which each
    /// side may drop leading axes and set axes to 1.
    pub fn broadcast_pair(
        max_rank: usize,
        max_dim: usize,
    ) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        shape(max_rank, max_dim).prop_flat_map(|full| {
            let rank = full.len();
            let side = move |full: Vec<usize>| {
                (0..=rank, proptest::collection::vec(any::<bool>(), rank)).prop_map(
                    move |(drop, ones)| {
                        full.iter()
                            .zip(&ones)
                            .skip(drop.min(rank - 1))
                            .map(|(&d, &one)| if one { 1 } else { d })
                            .collect::<Vec<usize>>()
                    },
                )
            };
            (side(full.clone()), side(full))
        })
    }
}
