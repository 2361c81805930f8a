//! Hessian-vector products `H v`, exact up to rounding, by forward-over-reverse differentiation
//! with dual numbers (GraSP's `H g`, Wang et al. 2020, eq. 8; Pearlmutter 1994).
//!
//! Every op is generic over [`Float`], so the same tape runs on [`Dual64`]: the inputs (or a
//! model's trainable parameters) are seeded as `θ + ε v`, the forward and backward passes run as
//! usual, and the gradient comes out as `∇L(θ + ε v) = ∇L(θ) + ε H v`: its real parts are the
//! gradient, its tangents `H v`. Nothing changes for `f32` and `f64` (no second-order
//! bookkeeping on the ordinary tape), and there is no finite-difference step to choose.
//!
//! Piecewise-smooth ops (relu, max-pool, abs, clamp) get the Hessian of the piece they are on,
//! as PyTorch's double backward does: relu'' = 0, and arg-max choices are those of the real
//! parts. Ops that evaluate a function through plain `f64` ([`OPS_WITHOUT_TANGENTS`]: STR's
//! threshold functions, FCPTS's surrogate and density) would drop the tangent and give a wrong
//! `H v` silently, so a tape holding one is refused with an error.
//!
//! Accuracy and cost (measured; details in `docs/gradients.md`, "Hessian-vector products"):
//! - against the exact Hessian of a quadratic form the relative error is at rounding level
//!   (worst 4e-16 over 200 cases); against a small MLP's full Hessian built column by column
//!   from central differences of a hand-written gradient it is below 1e-9, the differences' own
//!   error; `module_hvp` on LeNet-300, LeNet-5, ResNet-20 and FastGRNN agrees with differences
//!   of the `f64` gradient to 1e-10 - 1e-9;
//! - one `H v` on LeNet-5-Caffe with 100 images takes 290 ms of CPU, against 38 ms for an `f32`
//!   forward + backward and 97 ms for an `f64` one (single thread, Intel Xeon; preliminary):
//!   each product costs three `f64` products.
//!
//! A model-level product runs on a `Dual64` twin of the model (`models::build_as::<Dual64>`)
//! loaded from the trained one by [`load_twin`]:
//!
//! ```
//! use std::collections::BTreeMap;
//! use sparsegrad::dual::Dual64;
//! use sparsegrad::hvp::{load_twin, module_hvp};
//! use sparsegrad::models::{build, build_as, ModelName, ModelSpec};
//! use sparsegrad::prelude::*;
//! use sparsegrad::rng::seeded;
//!
//! let spec = ModelSpec { name: ModelName::Lenet300, input: (1, 4, 4), classes: 3, width: 1.0 };
//! let model = build(&spec, &mut seeded(1)).unwrap(); // the f32 model being pruned
//! let mut twin = build_as::<Dual64>(&spec, &mut seeded(0)).unwrap();
//! load_twin(&*model, &mut *twin).unwrap(); // same names, values widened
//! let images = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, 16]), Dual64::constant(0.5));
//! let labels = [0, 2];
//! // Direction: any subset of the trainable parameters by name (the rest move by 0).
//! let mut v = BTreeMap::new();
//! v.insert("fc1.weight".to_string(), ndarray::ArrayD::from_elem(ndarray::IxDyn(&[300, 16]), 1.0));
//! let out = module_hvp(&mut *twin, &v, |m, tape| {
//!     m.forward(tape.constant(images.clone())).cross_entropy(&labels, 0.0)
//! })
//! .unwrap();
//! let hv_fc1 = &out.get("fc1.weight").unwrap().hv; // (H v) restricted to fc1.weight
//! assert_eq!(hv_fc1.shape(), &[300, 16]);
//! ```

use std::collections::BTreeMap;

use ndarray::{IxDyn, Zip};

use crate::dual::Dual64;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::nn::Module;
use crate::param::Param;
use crate::tape::{Tape, Tensor, Var};

/// Ops that compute part of their value or gradient through plain `f64` functions (a
/// `ThresholdFn`, a `Surrogate`, a `Density`) and so lose the dual tangent. [`hvp`] and
/// [`module_hvp`] refuse a tape holding any of them rather than return a wrong `H v`.
pub const OPS_WITHOUT_TANGENTS: &[&str] = &[
    "soft_threshold",
    "threshold_fn",
    "group_soft_threshold",
    "sign_mask",
    "sparsity_rate",
];

/// The value, gradient and Hessian-vector product of a function of several inputs.
#[derive(Clone, Debug)]
pub struct Hvp {
    /// `f(x)`.
    pub value: f64,
    /// `∇f(x)`, one array per input.
    pub grad: Vec<Tensor<f64>>,
    /// `H v`, one array per input (block row `i`: `Σ_j ∂²f/∂x_i∂x_j v_j`).
    pub hv: Vec<Tensor<f64>>,
}

/// `f(x)`, `∇f(x)` and `H v` at `x = at` for a function of one or more leaves returning one
/// element (the closure shape of [`crate::check::gradcheck`], on `Dual64`). Fails if `v` does not
/// match `at` input for input, if `f` returns more than one element, or if `f` uses an op of
/// [`OPS_WITHOUT_TANGENTS`].
///
/// ```
/// use ndarray::array;
/// use sparsegrad::hvp::hvp;
/// // f(x) = sum(x^3): gradient 3 x^2, H = diag(6 x), so H v = 6 x v.
/// let x = array![1.0, -2.0].into_dyn();
/// let v = array![0.5, 3.0].into_dyn();
/// let out = hvp(|x| (x[0] * x[0] * x[0]).sum(), &[x], &[v]).unwrap();
/// assert_eq!(out.grad[0], array![3.0, 12.0].into_dyn());
/// assert_eq!(out.hv[0], array![3.0, -36.0].into_dyn());
/// ```
pub fn hvp<Func>(f: Func, at: &[Tensor<f64>], v: &[Tensor<f64>]) -> Result<Hvp>
where
    Func: for<'t> FnOnce(&[Var<'t, Dual64>]) -> Var<'t, Dual64>,
{
    if at.len() != v.len() {
        return Err(Error::invalid(format!(
            "hvp: {} directions for {} inputs",
            v.len(),
            at.len()
        )));
    }
    for (i, (x, d)) in at.iter().zip(v).enumerate() {
        if x.shape() != d.shape() {
            return Err(Error::invalid(format!(
                "hvp: direction {i} has shape {:?}, input {i} has shape {:?}",
                d.shape(),
                x.shape()
            )));
        }
    }
    let tape = Tape::<Dual64>::new();
    let leaves: Vec<_> = at
        .iter()
        .zip(v)
        .map(|(x, d)| tape.leaf(seeded(x, d)))
        .collect();
    let out = f(&leaves);
    let value = scalar_output(&tape, out)?;
    let grads = out.backward();
    let (grad, hv) = leaves
        .iter()
        .zip(at)
        .map(|(leaf, x)| split(grads.wrt(*leaf), x.shape()))
        .unzip();
    Ok(Hvp { value, grad, hv })
}

/// One trainable parameter's share of a [`ModuleHvp`].
#[derive(Clone, Debug)]
pub struct ParamHvp {
    /// Full (state_dict) name.
    pub name: String,
    /// `∂L/∂θ` for this parameter.
    pub grad: Tensor<f64>,
    /// This parameter's block of `H v`: `Σ_j ∂²L/∂θ∂θ_j v_j` over all trainable `θ_j`.
    pub hv: Tensor<f64>,
}

/// Loss, gradient and `H v` with respect to a model's trainable parameters.
#[derive(Clone, Debug)]
pub struct ModuleHvp {
    pub loss: f64,
    /// Every trainable parameter, in the model's visiting order.
    pub params: Vec<ParamHvp>,
}

impl ModuleHvp {
    /// The entry of the parameter with this full name.
    pub fn get(&self, name: &str) -> Option<&ParamHvp> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The loss `loss(model, tape)`, its gradient and the Hessian-vector product `H v` with respect to
/// the model's trainable parameters, `v` given per parameter by full name (a parameter not in `v`
/// has direction 0, so `v` may cover, for example, only the prunable weights, as GraSP's does).
///
/// The closure runs the forward pass as a training step would (in training mode batch norm uses
/// and updates its batch statistics). The parameters' tangents are cleared afterwards, so the
/// model stays a plain `f64`-valued twin. Fails, naming the parameter, if `v` names an unknown or
/// frozen parameter or has the wrong shape; also as [`hvp`] does.
pub fn module_hvp<M, L>(
    model: &mut M,
    v: &BTreeMap<String, Tensor<f64>>,
    loss: L,
) -> Result<ModuleHvp>
where
    M: Module<Dual64> + ?Sized,
    L: for<'t> FnOnce(&mut M, &'t Tape<Dual64>) -> Var<'t, Dual64>,
{
    let mut trainable = BTreeMap::new();
    model.visit("", &mut |name, p| {
        if p.trainable() {
            trainable.insert(name.to_string(), p.shape().to_vec());
        }
    });
    for (name, d) in v {
        match trainable.get(name) {
            None => {
                return Err(Error::invalid(format!(
                    "hvp: direction `{name}` names no trainable parameter of the model"
                )));
            }
            Some(shape) if shape.as_slice() != d.shape() => {
                return Err(Error::invalid(format!(
                    "hvp: direction `{name}` has shape {:?}, the parameter has shape {shape:?}",
                    d.shape()
                )));
            }
            Some(_) => {}
        }
    }
    model.visit_mut("", &mut |name, p| {
        let direction = v.get(name).filter(|_| p.trainable());
        set_tangent(p, direction);
    });
    let result = run_module(model, loss);
    model.visit_mut("", &mut |_, p| set_tangent(p, None));
    result
}

fn run_module<M, L>(model: &mut M, loss: L) -> Result<ModuleHvp>
where
    M: Module<Dual64> + ?Sized,
    L: for<'t> FnOnce(&mut M, &'t Tape<Dual64>) -> Var<'t, Dual64>,
{
    let tape = Tape::<Dual64>::new();
    let out = loss(model, &tape);
    let loss = scalar_output(&tape, out)?;
    let grads = out.backward();
    let mut params = Vec::new();
    model.visit("", &mut |name, p| {
        if p.trainable() {
            let (grad, hv) = split(grads.of(p), p.shape());
            params.push(ParamHvp {
                name: name.to_string(),
                grad,
                hv,
            });
        }
    });
    Ok(ModuleHvp { loss, params })
}

/// Copies every parameter and buffer of `src` into the parameter of the same full name in `dst`,
/// converted through `f64` (exact from `f32` to `f64` or `Dual64`), with its trainable flag:
/// how a `Dual64` twin (`models::build_as::<Dual64>`) gets the values of the model being pruned.
/// Fails, naming the parameter and changing nothing, unless both have the same names with the
/// same shapes (a weight transform such as a mask must be attached to the twin too).
pub fn load_twin<S, D, MS, MD>(src: &MS, dst: &mut MD) -> Result<()>
where
    S: Float,
    D: Float,
    MS: Module<S> + ?Sized,
    MD: Module<D> + ?Sized,
{
    let mut values: BTreeMap<String, &Param<S>> = BTreeMap::new();
    src.visit("", &mut |name, p| {
        values.insert(name.to_string(), p);
    });
    let mut unmatched = values.clone();
    let mut problem = None;
    dst.visit("", &mut |name, p| {
        let message = match unmatched.remove(name) {
            None => format!("parameter `{name}` of the twin is not in the model"),
            Some(s) if s.shape() != p.shape() => format!(
                "parameter `{name}` has shape {:?} in the model but {:?} in its twin",
                s.shape(),
                p.shape()
            ),
            Some(_) => return,
        };
        problem.get_or_insert(message);
    });
    if let Some(name) = unmatched.keys().next() {
        problem.get_or_insert(format!(
            "parameter `{name}` of the model is not in the twin"
        ));
    }
    if let Some(message) = problem {
        return Err(Error::invalid(format!("hvp twin: {message}")));
    }
    dst.visit_mut("", &mut |name, p| {
        let s = values[name];
        p.set_value(s.value().mapv(|x| D::c(x.f64())));
        p.set_trainable(s.trainable());
    });
    Ok(())
}

/// `x + ε d` elementwise.
fn seeded(x: &Tensor<f64>, d: &Tensor<f64>) -> Tensor<Dual64> {
    Zip::from(x)
        .and(d)
        .map_collect(|&re, &eps| Dual64::new(re, eps))
}

/// Sets a parameter's tangents to `direction` (zero if `None`), keeping its real parts.
fn set_tangent(p: &mut Param<Dual64>, direction: Option<&Tensor<f64>>) {
    match direction {
        Some(d) => Zip::from(p.value_mut()).and(d).for_each(|x, &e| x.eps = e),
        None => {
            if p.value().iter().any(|x| x.eps != 0.0) {
                p.value_mut().mapv_inplace(|x| Dual64::constant(x.re));
            }
        }
    }
}

/// The real value of a one-element output, after checking the tape for ops without tangents.
fn scalar_output(tape: &Tape<Dual64>, out: Var<'_, Dual64>) -> Result<f64> {
    if let Some(op) = tape
        .ops()
        .into_iter()
        .find(|op| OPS_WITHOUT_TANGENTS.contains(op))
    {
        return Err(Error::invalid(format!(
            "hvp: op `{op}` computes through plain f64 and has no second derivatives here"
        )));
    }
    if out.len() != 1 {
        return Err(Error::invalid(format!(
            "hvp: the function must return one element, got shape {:?}",
            out.shape()
        )));
    }
    Ok(out.item().re)
}

/// A dual gradient split into its real parts (the gradient) and tangents (`H v`); zeros when the
/// output does not depend on the input.
fn split(grad: Option<&Tensor<Dual64>>, shape: &[usize]) -> (Tensor<f64>, Tensor<f64>) {
    match grad {
        Some(g) => (g.mapv(|x| x.re), g.mapv(|x| x.eps)),
        None => (Tensor::zeros(IxDyn(shape)), Tensor::zeros(IxDyn(shape))),
    }
}
