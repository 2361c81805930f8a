//! Shape ops: they move elements without arithmetic, so each backward moves the gradient back
//! (reshape back, inverse permutation, scatter into zeros, split). Every output is in standard
//! (row-major) layout, which keeps the elementwise kernels on their contiguous fast path.

use ndarray::{Axis, IxDyn, Order, Slice, Zip};

use crate::float::Float;
use crate::tape::{Tensor, Var};

fn check_axis(op: &str, axis: usize, ndim: usize) {
    assert!(
        axis < ndim,
        "op `{op}`: axis {axis} out of range for a {ndim}-d value"
    );
}

impl<'t, F: Float> Var<'t, F> {
    /// Same elements, new shape (row-major order, like `torch.reshape`).
    pub fn reshape(self, shape: &[usize]) -> Self {
        let x = self.value();
        if x.shape() == shape {
            // The same shape: the value itself, without a copy (flattening an already flat
            // batch measured 7% of a sparse LeNet-300 forward).
            return self;
        }
        let old: Vec<usize> = x.shape().to_vec();
        assert_eq!(
            shape.iter().product::<usize>(),
            x.len(),
            "op `reshape`: cannot reshape {old:?} into {shape:?}"
        );
        let y = x
            .to_shape((IxDyn(shape), Order::RowMajor))
            .expect("size checked")
            .into_owned();
        self.tape().record("reshape", y, &[self], move |g, _| {
            vec![Some(
                g.to_shape((IxDyn(&old), Order::RowMajor))
                    .expect("same size")
                    .into_owned(),
            )]
        })
    }

    /// Keeps axes before `start` and merges the rest into one (`torch.flatten(x, start)`).
    pub fn flatten(self, start: usize) -> Self {
        let shape = self.shape();
        check_axis("flatten", start, shape.len());
        let mut new: Vec<usize> = shape[..start].to_vec();
        new.push(shape[start..].iter().product());
        self.reshape(&new)
    }

    /// Reorders axes: output axis i is input axis `axes[i]`.
    pub fn permute(self, axes: &[usize]) -> Self {
        let x = self.value();
        let mut seen = vec![false; x.ndim()];
        assert_eq!(
            axes.len(),
            x.ndim(),
            "op `permute`: {axes:?} is not a permutation of {} axes",
            x.ndim()
        );
        for &a in axes {
            assert!(
                a < x.ndim() && !seen[a],
                "op `permute`: {axes:?} is not a permutation"
            );
            seen[a] = true;
        }
        let y = x
            .view()
            .permuted_axes(axes.to_vec())
            .as_standard_layout()
            .into_owned();
        let mut inverse = vec![0; axes.len()];
        for (i, &a) in axes.iter().enumerate() {
            inverse[a] = i;
        }
        self.tape().record("permute", y, &[self], move |g, _| {
            vec![Some(
                g.view()
                    .permuted_axes(inverse)
                    .as_standard_layout()
                    .into_owned(),
            )]
        })
    }

    /// Swaps two axes.
    pub fn transpose(self, a: usize, b: usize) -> Self {
        let mut axes: Vec<usize> = (0..self.ndim()).collect();
        check_axis("transpose", a.max(b), axes.len());
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// Elements `start, start + step, ...` below `end` along `axis` (`x[..., start:end:step, ...]`).
    pub fn slice(self, axis: usize, start: usize, end: usize, step: usize) -> Self {
        let x = self.value();
        check_axis("slice", axis, x.ndim());
        assert!(
            start <= end && end <= x.shape()[axis] && step > 0,
            "op `slice`: {start}..{end} step {step} is not within axis {axis} of length {}",
            x.shape()[axis]
        );
        let s = Slice::new(start as isize, Some(end as isize), step as isize);
        let y = x
            .slice_axis(Axis(axis), s)
            .as_standard_layout()
            .into_owned();
        let dim = x.raw_dim();
        self.tape().record("slice", y, &[self], move |g, _| {
            let mut dx = Tensor::<F>::zeros(dim);
            dx.slice_axis_mut(Axis(axis), s).assign(g);
            vec![Some(dx)]
        })
    }

    /// `len` elements from `start` along `axis` (`torch.narrow`).
    pub fn narrow(self, axis: usize, start: usize, len: usize) -> Self {
        self.slice(axis, start, start + len, 1)
    }

    /// Zero padding: `before` zeros in front of and `after` behind the elements of `axis`.
    pub fn pad(self, axis: usize, before: usize, after: usize) -> Self {
        let x = self.value();
        check_axis("pad", axis, x.ndim());
        let mut shape = x.shape().to_vec();
        let n = shape[axis];
        shape[axis] += before + after;
        let mut y = Tensor::<F>::zeros(IxDyn(&shape));
        let inner = Slice::from(before..before + n);
        y.slice_axis_mut(Axis(axis), inner).assign(&*x);
        self.tape().record("pad", y, &[self], move |g, _| {
            vec![Some(
                g.slice_axis(Axis(axis), inner)
                    .as_standard_layout()
                    .into_owned(),
            )]
        })
    }

    /// Joins values along an existing axis.
    pub fn concat(parts: &[Self], axis: usize) -> Self {
        assert!(!parts.is_empty(), "op `concat`: nothing to concatenate");
        let values: Vec<_> = parts.iter().map(|p| p.value()).collect();
        check_axis("concat", axis, values[0].ndim());
        let views: Vec<_> = values.iter().map(|v| v.view()).collect();
        let y = ndarray::concatenate(Axis(axis), &views).unwrap_or_else(|_| {
            panic!(
                "op `concat`: shapes {:?} differ off axis {axis}",
                values
                    .iter()
                    .map(|v| v.shape().to_vec())
                    .collect::<Vec<_>>()
            )
        });
        let sizes: Vec<usize> = values.iter().map(|v| v.shape()[axis]).collect();
        parts[0].tape().record("concat", y, parts, move |g, needs| {
            let mut start = 0;
            sizes
                .iter()
                .zip(needs)
                .map(|(&n, &need)| {
                    let part = need.then(|| {
                        g.slice_axis(Axis(axis), Slice::from(start..start + n))
                            .as_standard_layout()
                            .into_owned()
                    });
                    start += n;
                    part
                })
                .collect()
        })
    }

    /// Joins same-shaped values along a new axis.
    pub fn stack(parts: &[Self], axis: usize) -> Self {
        assert!(!parts.is_empty(), "op `stack`: nothing to stack");
        let values: Vec<_> = parts.iter().map(|p| p.value()).collect();
        assert!(
            axis <= values[0].ndim(),
            "op `stack`: axis {axis} out of range"
        );
        let views: Vec<_> = values.iter().map(|v| v.view()).collect();
        let y = ndarray::stack(Axis(axis), &views).unwrap_or_else(|_| {
            panic!(
                "op `stack`: shapes {:?} differ",
                values
                    .iter()
                    .map(|v| v.shape().to_vec())
                    .collect::<Vec<_>>()
            )
        });
        parts[0].tape().record("stack", y, parts, move |g, needs| {
            needs
                .iter()
                .enumerate()
                .map(|(i, &need)| {
                    need.then(|| {
                        g.index_axis(Axis(axis), i)
                            .as_standard_layout()
                            .into_owned()
                    })
                })
                .collect()
        })
    }

    /// Repeats the value to `shape` by numpy broadcasting; the engine sums the gradient back.
    pub fn broadcast_to(self, shape: &[usize]) -> Self {
        let x = self.value();
        let y = x
            .broadcast(IxDyn(shape))
            .unwrap_or_else(|| {
                panic!(
                    "op `broadcast_to`: {:?} does not broadcast to {shape:?}",
                    x.shape()
                )
            })
            .to_owned();
        self.tape()
            .record("broadcast_to", y, &[self], |g, _| vec![Some(g.clone())])
    }

    /// Picks entries `indices` along `axis` (repeats allowed; their gradients add up).
    pub fn index_select(self, axis: usize, indices: &[usize]) -> Self {
        let x = self.value();
        check_axis("index_select", axis, x.ndim());
        let n = x.shape()[axis];
        if let Some(bad) = indices.iter().find(|&&i| i >= n) {
            panic!("op `index_select`: index {bad} out of range for axis {axis} of length {n}");
        }
        let y = x.select(Axis(axis), indices);
        let dim = x.raw_dim();
        let indices = indices.to_vec();
        self.tape().record("index_select", y, &[self], move |g, _| {
            let mut dx = Tensor::<F>::zeros(dim);
            for (j, &i) in indices.iter().enumerate() {
                let mut row = dx.index_axis_mut(Axis(axis), i);
                row += &g.index_axis(Axis(axis), j);
            }
            vec![Some(dx)]
        })
    }

    /// `out[..., j, ...] = x[..., index[..., j, ...], ...]` along `axis` (`torch.gather`); `index`
    /// has the shape of `x` except along `axis`. Cross-entropy uses it to pick the label's logit.
    pub fn gather(self, axis: usize, index: &ndarray::ArrayD<usize>) -> Self {
        let x = self.value();
        check_axis("gather", axis, x.ndim());
        let n = x.shape()[axis];
        let mut expected = x.shape().to_vec();
        expected[axis] = index.shape()[axis];
        assert_eq!(
            index.shape(),
            &expected[..],
            "op `gather`: index shape does not match the value's off axis {axis}"
        );
        if let Some(bad) = index.iter().find(|&&i| i >= n) {
            panic!("op `gather`: index {bad} out of range for axis {axis} of length {n}");
        }
        let mut y = Tensor::<F>::zeros(index.raw_dim());
        Zip::from(y.lanes_mut(Axis(axis)))
            .and(x.lanes(Axis(axis)))
            .and(index.lanes(Axis(axis)))
            .for_each(|mut out, src, idx| out.iter_mut().zip(idx).for_each(|(o, &i)| *o = src[i]));
        let dim = x.raw_dim();
        let index = index.clone();
        self.tape().record("gather", y, &[self], move |g, _| {
            let mut dx = Tensor::<F>::zeros(dim);
            Zip::from(dx.lanes_mut(Axis(axis)))
                .and(g.lanes(Axis(axis)))
                .and(index.lanes(Axis(axis)))
                .for_each(|mut dst, gl, idx| gl.iter().zip(idx).for_each(|(&g, &i)| dst[i] += g));
            vec![Some(dx)]
        })
    }
}
