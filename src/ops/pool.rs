//! Pooling over the two spatial axes of NCHW values: max, average and global average.
//!
//! Shapes follow PyTorch (`ceil_mode=False`, dilation 1): an input `[N, C, H, W]` pooled with
//! kernel `k`, stride `s` and padding `p` gives `[N, C, (H + 2p - k) / s + 1, ...]`, and padding
//! may be at most half the kernel, so every window holds at least one real element.
//!
//! - `max_pool2d` pads with -inf (padded positions never win). The gradient goes to the arg-max;
//!   on ties the FIRST maximal element in window scan order (row by row, left to right) gets it,
//!   and a window holding NaNs outputs its LAST NaN in scan order and sends the gradient there:
//!   PyTorch's CPU kernel updates its running maximum on `val > max || isnan(val)`, so every NaN
//!   replaces the one before it. Both conventions are tested in `tests/suite/grad_pool.rs`.
//! - `avg_pool2d` pads with zeros that count in the divisor (PyTorch's default
//!   `count_include_pad=True`), so every window divides by `kH * kW`.
//!
//! Each (sample, channel) plane is independent and written by one thread, so results are
//! bit-identical for every thread count.

use std::hint::select_unpredictable;
use std::ops::Range;

use ndarray::IxDyn;
use rayon::prelude::*;

use crate::float::Float;
use crate::tape::{Tensor, Var};

pub(crate) mod max_2x2;

/// Below this many input elements a pooling op runs on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// The geometry of one pooling: plane sizes and where each window lies.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Input plane height and width.
    h: usize,
    w: usize,
    /// Output plane height and width.
    ho: usize,
    wo: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

impl Window {
    fn new(
        op: &str,
        shape: &[usize],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Self {
        assert_eq!(
            shape.len(),
            4,
            "op `{op}`: expected an NCHW value, got shape {shape:?}"
        );
        let (h, w) = (shape[2], shape[3]);
        assert!(
            h > 0 && w > 0,
            "op `{op}`: empty spatial axes in shape {shape:?}"
        );
        let mut out = [0; 2];
        for (axis, size) in [h, w].into_iter().enumerate() {
            let (k, s, p) = (kernel[axis], stride[axis], padding[axis]);
            assert!(
                k > 0 && s > 0,
                "op `{op}`: kernel {kernel:?} and stride {stride:?} must be positive"
            );
            // PyTorch: "pad should be at most half of effective kernel size".
            assert!(
                2 * p <= k,
                "op `{op}`: padding {padding:?} exceeds half the kernel {kernel:?}"
            );
            assert!(
                size + 2 * p >= k,
                "op `{op}`: kernel {kernel:?} is larger than the padded input {shape:?} (padding {padding:?})"
            );
            out[axis] = (size + 2 * p - k) / s + 1;
        }
        assert!(
            h * w <= u32::MAX as usize,
            "op `{op}`: a plane of {h}x{w} is too large"
        );
        Window {
            h,
            w,
            ho: out[0],
            wo: out[1],
            kernel,
            stride,
            padding,
        }
    }

    /// Input indices along `axis` covered by output index `i`, clipped to the unpadded input.
    #[inline]
    fn span(&self, axis: usize, i: usize) -> Range<usize> {
        let size = [self.h, self.w][axis];
        let start = i * self.stride[axis];
        let end = (start + self.kernel[axis]).saturating_sub(self.padding[axis]);
        start.saturating_sub(self.padding[axis])..end.min(size)
    }

    fn output_shape(&self, shape: &[usize]) -> [usize; 4] {
        [shape[0], shape[1], self.ho, self.wo]
    }

    /// Planes per rayon task, so that small values run on the calling thread.
    fn min_planes_per_task(&self) -> usize {
        (PARALLEL_MIN_ELEMENTS / (self.h * self.w).max(1)).max(1)
    }
}

/// One plane's max pooling: values into `y`, the arg-max (flat index in the plane) into `arg`
/// when given.
///
/// The arg-max is the first element strictly greater than all before it (so ties go to the
/// first in scan order), unless the window holds a NaN: then the last NaN wins, as in PyTorch
/// (whose scan takes every NaN it meets). The loop is written without data-dependent branches (selects and
/// `max`), because on real data the comparison is unpredictable and mispredicted branches
/// would cost more than the whole window.
fn max_pool_plane<F: Float>(win: &Window, x: &[F], y: &mut [F], arg: Option<&mut [u32]>) {
    let two_by_two = win.kernel == [2, 2] && win.stride == [2, 2] && win.padding == [0, 0];
    if two_by_two {
        max_2x2::max_pool_plane_2x2(win.w, win.wo, x, y, arg);
    } else {
        max_pool_plane_any(win, x, y, arg);
    }
}

/// [`max_pool_plane`] for any window.
fn max_pool_plane_any<F: Float>(win: &Window, x: &[F], y: &mut [F], mut arg: Option<&mut [u32]>) {
    for i in 0..win.ho {
        let rows = win.span(0, i);
        for j in 0..win.wo {
            let cols = win.span(1, j);
            let mut best_at = rows.start * win.w + cols.start;
            let mut best = x[best_at];
            let mut nan_at = NO_NAN;
            for r in rows.clone() {
                let start = r * win.w + cols.start;
                for (at, &v) in (start..).zip(&x[start..r * win.w + cols.end]) {
                    best_at = select_unpredictable(v > best, at, best_at);
                    best = best.max(v);
                    nan_at = select_unpredictable(v.is_nan(), at, nan_at);
                }
            }
            let at = if nan_at == NO_NAN { best_at } else { nan_at };
            y[i * win.wo + j] = x[at];
            if let Some(arg) = arg.as_deref_mut() {
                arg[i * win.wo + j] = at as u32;
            }
        }
    }
}

/// `nan_at` of a window without NaN.
const NO_NAN: usize = usize::MAX;

/// One plane's average pooling (zero padding counted in the divisor).
fn avg_pool_plane<F: Float>(win: &Window, x: &[F], y: &mut [F]) {
    let inv_area = F::one() / F::c((win.kernel[0] * win.kernel[1]) as f64);
    for i in 0..win.ho {
        let rows = win.span(0, i);
        for j in 0..win.wo {
            let cols = win.span(1, j);
            let mut sum = F::zero();
            for r in rows.clone() {
                for &v in &x[r * win.w + cols.start..r * win.w + cols.end] {
                    sum += v;
                }
            }
            y[i * win.wo + j] = sum * inv_area;
        }
    }
}

/// Adjoint of [`avg_pool_plane`]: every window spreads its gradient evenly over its real elements.
fn avg_pool_plane_backward<F: Float>(win: &Window, g: &[F], dx: &mut [F]) {
    let inv_area = F::one() / F::c((win.kernel[0] * win.kernel[1]) as f64);
    for i in 0..win.ho {
        let rows = win.span(0, i);
        for j in 0..win.wo {
            let cols = win.span(1, j);
            let share = g[i * win.wo + j] * inv_area;
            for r in rows.clone() {
                for d in &mut dx[r * win.w + cols.start..r * win.w + cols.end] {
                    *d += share;
                }
            }
        }
    }
}

/// The elements in row-major order: borrowed when `x` is in standard layout, else copied.
fn standard_slice<F: Float>(x: &Tensor<F>) -> std::borrow::Cow<'_, [F]> {
    match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    }
}

impl<'t, F: Float> Var<'t, F> {
    /// 2-D max pooling of `[N, C, H, W]` (`torch.nn.functional.max_pool2d`, `ceil_mode=False`).
    /// Gradient to the first maximal element of each window in scan order.
    pub fn max_pool2d(self, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Self {
        let x = self.value();
        let win = Window::new("max_pool2d", x.shape(), kernel, stride, padding);
        let out_shape = win.output_shape(x.shape());
        let (in_plane, out_plane) = (win.h * win.w, win.ho * win.wo);
        let xs = standard_slice(&x);
        let mut y = vec![F::zero(); out_shape.iter().product()];
        // The arg-max only serves the gradient: not computed when none will flow back (inference).
        let need_arg = self.tape().grad_enabled() && self.requires_grad();
        let mut arg = vec![0u32; if need_arg { y.len() } else { 0 }];
        let planes = xs.par_chunks(in_plane).zip(y.par_chunks_mut(out_plane));
        if need_arg {
            planes
                .zip(arg.par_chunks_mut(out_plane))
                .with_min_len(win.min_planes_per_task())
                .for_each(|((xp, yp), ap)| max_pool_plane(&win, xp, yp, Some(ap)));
        } else {
            planes
                .with_min_len(win.min_planes_per_task())
                .for_each(|(xp, yp)| max_pool_plane(&win, xp, yp, None));
        }
        let y = Tensor::from_shape_vec(IxDyn(&out_shape), y).expect("output size");
        let in_shape = x.shape().to_vec();
        self.tape().record("max_pool2d", y, &[self], move |g, _| {
            let gs = standard_slice(g);
            let mut dx = vec![F::zero(); in_shape.iter().product()];
            dx.par_chunks_mut(in_plane)
                .zip(gs.par_chunks(out_plane))
                .zip(arg.par_chunks(out_plane))
                .with_min_len(win.min_planes_per_task())
                .for_each(|((dxp, gp), ap)| {
                    // Overlapping windows (stride < kernel) may share an arg-max: accumulate.
                    for (&gv, &at) in gp.iter().zip(ap) {
                        dxp[at as usize] += gv;
                    }
                });
            vec![Some(
                Tensor::from_shape_vec(IxDyn(&in_shape), dx).expect("input size"),
            )]
        })
    }

    /// 2-D average pooling of `[N, C, H, W]` (`torch.nn.functional.avg_pool2d` with
    /// `ceil_mode=False, count_include_pad=True`): every window divides by `kH * kW`.
    pub fn avg_pool2d(self, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Self {
        let x = self.value();
        let win = Window::new("avg_pool2d", x.shape(), kernel, stride, padding);
        let out_shape = win.output_shape(x.shape());
        let (in_plane, out_plane) = (win.h * win.w, win.ho * win.wo);
        let mut y = vec![F::zero(); out_shape.iter().product()];
        standard_slice(&x)
            .par_chunks(in_plane)
            .zip(y.par_chunks_mut(out_plane))
            .with_min_len(win.min_planes_per_task())
            .for_each(|(xp, yp)| avg_pool_plane(&win, xp, yp));
        let y = Tensor::from_shape_vec(IxDyn(&out_shape), y).expect("output size");
        let in_shape = x.shape().to_vec();
        self.tape().record("avg_pool2d", y, &[self], move |g, _| {
            let mut dx = vec![F::zero(); in_shape.iter().product()];
            dx.par_chunks_mut(in_plane)
                .zip(standard_slice(g).par_chunks(out_plane))
                .with_min_len(win.min_planes_per_task())
                .for_each(|(dxp, gp)| avg_pool_plane_backward(&win, gp, dxp));
            vec![Some(
                Tensor::from_shape_vec(IxDyn(&in_shape), dx).expect("input size"),
            )]
        })
    }

    /// Mean over the spatial axes: `[N, C, H, W] -> [N, C]` (`adaptive_avg_pool2d(x, 1)`
    /// flattened). Composed from `mean_axes`, whose gradient spreads `g / (H W)` evenly.
    pub fn global_avg_pool2d(self) -> Self {
        let shape = self.shape();
        assert_eq!(
            shape.len(),
            4,
            "op `global_avg_pool2d`: expected an NCHW value, got shape {shape:?}"
        );
        self.mean_axes(&[2, 3], false)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Values with ties, signed zeros and NaNs, where the scan rules matter.
    fn plane_value() -> impl Strategy<Value = f32> {
        prop_oneof![
            Just(f32::NAN),
            Just(-0.0),
            Just(0.0),
            Just(1.0),
            Just(-1.0),
            Just(f32::NEG_INFINITY),
            -2.0f32..2.0,
        ]
    }

    proptest! {
        /// The unrolled 2x2 path gives the general loop's values (bit for bit) and arg-maxes.
        #[test]
        fn max_pool_2x2_matches_the_general_loop(
            // Small planes, and larger ones.
            (h, w, x) in prop_oneof![(2usize..9, 2usize..9), (2usize..6, 30usize..70), (60usize..80, 30usize..36)]
                .prop_flat_map(|(h, w)| {
                (Just(h), Just(w), proptest::collection::vec(plane_value(), h * w))
            })
        ) {
            let win = Window::new("max_pool2d", &[1, 1, h, w], [2, 2], [2, 2], [0, 0]);
            let n = win.ho * win.wo;
            let (mut y_any, mut arg_any) = (vec![0.0f32; n], vec![0u32; n]);
            max_pool_plane_any(&win, &x, &mut y_any, Some(&mut arg_any));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // The dispatched path (explicit AVX-512 on such CPUs) and the portable one, with
            // and without the arg-max.
            type Plane2x2 = fn(usize, usize, &[f32], &mut [f32], Option<&mut [u32]>);
            let paths: [Plane2x2; 2] =
                [max_2x2::max_pool_plane_2x2, max_2x2::max_pool_plane_2x2_portable];
            for path in paths {
                let (mut y_fast, mut arg_fast) = (vec![0.0f32; n], vec![0u32; n]);
                path(win.w, win.wo, &x, &mut y_fast, Some(&mut arg_fast));
                prop_assert_eq!(&arg_fast, &arg_any);
                prop_assert_eq!(bits(&y_fast), bits(&y_any));
                let mut y_values_only = vec![0.0f32; n];
                path(win.w, win.wo, &x, &mut y_values_only, None);
                prop_assert_eq!(bits(&y_values_only), bits(&y_any));
            }
        }
    }
}
