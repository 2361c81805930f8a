//! Reductions: sum, mean, max over axes or everything; logsumexp, softmax, log_softmax.
//!
//! The gradient of a reduction is the output gradient broadcast back over the reduced axes
//! (`expand_to`), scaled by the reduction's local derivative.

use std::sync::Arc;

use ndarray::{Axis, IxDyn, Order, RemoveAxis, Zip};

use crate::float::Float;
use crate::tape::{Tensor, Var};

/// Sorted, de-duplicated axes, each checked against `ndim`.
fn normalise_axes(op: &str, axes: &[usize], ndim: usize) -> Vec<usize> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    for &a in &axes {
        assert!(
            a < ndim,
            "op `{op}`: axis {a} out of range for a {ndim}-d value"
        );
    }
    axes
}

/// Shape of `shape` with `axes` kept as length 1.
fn keepdim_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(i, &n)| if axes.contains(&i) { 1 } else { n })
        .collect()
}

/// Broadcasts a gradient of a reduction (with or without the reduced axes kept) back to `shape`.
fn expand_to<F: Float>(g: &Tensor<F>, shape: &[usize], axes: &[usize]) -> Tensor<F> {
    if g.len() == 1 {
        // Everything was reduced: a constant fill, not an element-by-element broadcast copy.
        return Tensor::from_elem(IxDyn(shape), *g.iter().next().expect("one element"));
    }
    // `to_shape` also accepts a gradient that is not row-major (it copies only then).
    let kept = g
        .to_shape((IxDyn(&keepdim_shape(shape, axes)), Order::RowMajor))
        .expect("reduction gradient has the reduced shape");
    kept.broadcast(IxDyn(shape))
        .expect("broadcastable")
        .to_owned()
}

fn sum_axes<F: Float>(x: &Tensor<F>, axes: &[usize], keepdim: bool) -> Tensor<F> {
    let reduced = if axes.len() == x.ndim() && !axes.is_empty() {
        // Everything: ndarray's contiguous sum, no copy of `x` (fixed order: deterministic).
        Tensor::from_elem(IxDyn(&[]), x.sum())
    } else {
        let mut axes_desc = axes.iter().rev();
        match axes_desc.next() {
            None => x.clone(),
            Some(&last) => axes_desc.fold(x.sum_axis(Axis(last)), |y, &a| y.sum_axis(Axis(a))),
        }
    };
    if keepdim {
        // `reduced` is `x` itself when `axes` is empty, in whatever memory order `x` has.
        reduced
            .into_shape_clone((IxDyn(&keepdim_shape(x.shape(), axes)), Order::RowMajor))
            .expect("same size")
    } else {
        reduced
    }
}

impl<'t, F: Float> Var<'t, F> {
    /// Sum over `axes` (kept as length 1 if `keepdim`).
    pub fn sum_axes(self, axes: &[usize], keepdim: bool) -> Self {
        let x = self.value();
        let axes = normalise_axes("sum", axes, x.ndim());
        let y = sum_axes(&x, &axes, keepdim);
        let shape = x.shape().to_vec();
        self.tape().record("sum", y, &[self], move |g, _| {
            vec![Some(expand_to(g, &shape, &axes))]
        })
    }

    /// Sum of all elements, as a one-element value of shape [].
    pub fn sum(self) -> Self {
        let all: Vec<usize> = (0..self.ndim()).collect();
        self.sum_axes(&all, false)
    }

    /// Mean over `axes`.
    pub fn mean_axes(self, axes: &[usize], keepdim: bool) -> Self {
        let shape = self.shape();
        let count: usize = normalise_axes("mean", axes, shape.len())
            .iter()
            .map(|&a| shape[a])
            .product();
        self.sum_axes(axes, keepdim).mul_scalar(1.0 / count as f64)
    }

    /// Mean of all elements.
    pub fn mean(self) -> Self {
        let n = self.len();
        self.sum().mul_scalar(1.0 / n as f64)
    }

    /// Maximum along one axis. The gradient goes to the first maximal element of each lane
    /// (the arg-max), as PyTorch's `max(dim)`.
    pub fn max_axis(self, axis: usize, keepdim: bool) -> Self {
        let x = self.value();
        normalise_axes("max", &[axis], x.ndim());
        let mut argmax = ndarray::Array::<usize, _>::zeros(x.raw_dim().remove_axis(Axis(axis)));
        let mut y = Tensor::<F>::zeros(argmax.raw_dim());
        Zip::from(x.lanes(Axis(axis)))
            .and(&mut argmax)
            .and(&mut y)
            .for_each(|lane, am, m| {
                let (i, v) = lane.iter().enumerate().fold((0, lane[0]), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                });
                *am = i;
                *m = v;
            });
        let shape = x.shape().to_vec();
        if keepdim {
            y = y.insert_axis(Axis(axis));
        }
        self.tape().record("max", y, &[self], move |g, _| {
            let g = g
                .view()
                .into_shape_with_order(argmax.raw_dim())
                .expect("reduced shape");
            let mut dx = Tensor::<F>::zeros(IxDyn(&shape));
            Zip::from(dx.lanes_mut(Axis(axis)))
                .and(&argmax)
                .and(&g)
                .for_each(|mut lane, &i, &g| lane[i] = g);
            vec![Some(dx)]
        })
    }

    /// Maximum of all elements (gradient to the first maximal element in memory order).
    pub fn max(self) -> Self {
        let n = self.len();
        self.reshape(&[n]).max_axis(0, false)
    }

    /// ln sum exp(x) along `axis`, computed with the maximum subtracted; gradient softmax(x).
    pub fn logsumexp(self, axis: usize, keepdim: bool) -> Self {
        let x = self.value();
        normalise_axes("logsumexp", &[axis], x.ndim());
        // Shift by the maximum for stability; an infinite maximum shifts by 0 instead, so a row of
        // all -inf gives -inf and a row holding +inf gives +inf (PyTorch), not NaN from inf - inf.
        let m = x
            .map_axis(Axis(axis), |l| {
                let max = l.fold(F::neg_infinity(), |a, &b| a.max(b));
                if max.is_finite() { max } else { F::zero() }
            })
            .insert_axis(Axis(axis));
        let y_kept = (&*x - &m)
            .mapv(|v| v.exp())
            .sum_axis(Axis(axis))
            .insert_axis(Axis(axis))
            .mapv(|s| s.ln())
            + &m;
        let y_kept = Arc::new(y_kept);
        let y_saved = y_kept.clone();
        let y = if keepdim {
            (*y_kept).clone()
        } else {
            y_kept.index_axis(Axis(axis), 0).to_owned()
        };
        self.tape().record("logsumexp", y, &[self], move |g, _| {
            let g = if keepdim {
                g.clone()
            } else {
                g.clone().insert_axis(Axis(axis))
            };
            // d lse / dx = exp(x - lse) = softmax(x)
            vec![Some(
                Zip::from(&*x)
                    .and_broadcast(&*y_saved)
                    .and_broadcast(&g)
                    .map_collect(|&x, &l, &g| g * (x - l).exp()),
            )]
        })
    }

    /// softmax along `axis`; backward y * (g - sum(g * y)).
    pub fn softmax(self, axis: usize) -> Self {
        let x = self.value();
        normalise_axes("softmax", &[axis], x.ndim());
        let y = Arc::new(softmax(&x, axis));
        let y_saved = y.clone();
        self.tape().record("softmax", y, &[self], move |g, _| {
            let gy = (g * &*y_saved).sum_axis(Axis(axis)).insert_axis(Axis(axis));
            vec![Some(
                Zip::from(g)
                    .and(&*y_saved)
                    .and_broadcast(&gy)
                    .map_collect(|&g, &y, &s| y * (g - s)),
            )]
        })
    }

    /// log softmax along `axis`; backward g - softmax * sum(g).
    pub fn log_softmax(self, axis: usize) -> Self {
        let x = self.value();
        normalise_axes("log_softmax", &[axis], x.ndim());
        let y = Arc::new(log_softmax(&x, axis));
        let y_saved = y.clone();
        self.tape().record("log_softmax", y, &[self], move |g, _| {
            let gs = g.sum_axis(Axis(axis)).insert_axis(Axis(axis));
            vec![Some(
                Zip::from(g)
                    .and(&*y_saved)
                    .and_broadcast(&gs)
                    .map_collect(|&g, &y, &s| g - y.exp() * s),
            )]
        })
    }
}

/// log softmax of a plain array (also used without a tape, e.g. by evaluation code).
pub fn log_softmax<F: Float>(x: &Tensor<F>, axis: usize) -> Tensor<F> {
    let m = x
        .map_axis(Axis(axis), |l| l.fold(F::neg_infinity(), |a, &b| a.max(b)))
        .insert_axis(Axis(axis));
    let shifted = x - &m;
    let lse = shifted
        .mapv(|v| v.exp())
        .sum_axis(Axis(axis))
        .insert_axis(Axis(axis))
        .mapv(|s| s.ln());
    shifted - &lse
}

/// softmax of a plain array.
pub fn softmax<F: Float>(x: &Tensor<F>, axis: usize) -> Tensor<F> {
    log_softmax(x, axis).mapv(|v| v.exp())
}
