//! Property-based gradient checks of the shape ops (`src/ops/shape.rs`): random shapes, axes,
//! permutations, slices and indices. Forward values are checked element by element against
//! where each output element must come from.

use crate::common::{assert_close, assert_grad, forward};
use ndarray::{ArrayD, Axis, Dimension, IxDyn, Slice};
use proptest::collection::vec;
use proptest::prelude::*;
use sparsegrad::check::strategies::{broadcast_pair, shape, tensor};
use sparsegrad::tape::{Tensor, Var, broadcast_shape};

/// A random-shaped tensor with values in [-3, 3).
fn any_x() -> impl Strategy<Value = Tensor<f64>> {
    crate::common::any_tensor(-3.0, 3.0)
}

/// A tensor with a random axis of it.
fn x_axis() -> impl Strategy<Value = (Tensor<f64>, usize)> {
    any_x().prop_flat_map(|x| {
        let rank = x.ndim();
        (Just(x), 0..rank)
    })
}

/// Row-major element order, whatever the memory layout.
fn elements(x: &Tensor<f64>) -> Vec<f64> {
    x.iter().copied().collect()
}

proptest! {
    #![proptest_config(crate::common::proptest_config())]

    #[test]
    fn grad_reshape(
        (x, target) in any_x().prop_flat_map(|x| {
            let rank = x.ndim();
            (Just(x.clone()), Just(x.shape().to_vec()).prop_shuffle(), vec(any::<bool>(), rank + 1))
        }).prop_map(|(x, dims, merge)| {
            // The dims shuffled, some neighbours merged, maybe a leading 1: same element count.
            let mut target: Vec<usize> = Vec::new();
            for (&d, &m) in dims.iter().zip(&merge) {
                match target.last_mut() {
                    Some(last) if m => *last *= d,
                    _ => target.push(d),
                }
            }
            if merge[dims.len()] {
                target.insert(0, 1);
            }
            (x, target)
        })
    ) {
        let y = forward(|v| v[0].reshape(&target), std::slice::from_ref(&x));
        prop_assert_eq!(y.shape(), &target[..]);
        prop_assert_eq!(elements(&y), elements(&x));
        assert_grad(|v| v[0].reshape(&target), &[x]);
    }

    #[test]
    fn grad_flatten((x, start) in x_axis()) {
        let y = forward(|v| v[0].flatten(start), std::slice::from_ref(&x));
        let mut expected_shape = x.shape()[..start].to_vec();
        expected_shape.push(x.shape()[start..].iter().product());
        prop_assert_eq!(y.shape(), &expected_shape[..]);
        prop_assert_eq!(elements(&y), elements(&x));
        assert_grad(|v| v[0].flatten(start), &[x]);
    }

    #[test]
    fn grad_permute(
        (x, axes) in any_x().prop_flat_map(|x| {
            let rank = x.ndim();
            (Just(x), Just((0..rank).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let y = forward(|v| v[0].permute(&axes), std::slice::from_ref(&x));
        for (idx, &v) in y.indexed_iter() {
            let mut src = vec![0; axes.len()];
            for (i, &a) in axes.iter().enumerate() {
                src[a] = idx[i];
            }
            prop_assert_eq!(v, x[IxDyn(&src)]);
        }
        assert_grad(|v| v[0].permute(&axes), &[x]);
    }

    #[test]
    fn grad_transpose(
        (x, a, b) in any_x().prop_flat_map(|x| {
            let rank = x.ndim();
            (Just(x), 0..rank, 0..rank)
        })
    ) {
        let y = forward(|v| v[0].transpose(a, b), std::slice::from_ref(&x));
        let mut expected = x.view();
        expected.swap_axes(a, b);
        assert_close(&y, &expected.to_owned());
        assert_grad(|v| v[0].transpose(a, b), &[x]);
    }

    #[test]
    fn grad_slice(
        (x, axis, start, end, step) in x_axis().prop_flat_map(|(x, axis)| {
            let n = x.shape()[axis];
            (Just(x), Just(axis), 0..n, 1..=3usize).prop_flat_map(move |(x, axis, start, step)| {
                (Just(x), Just(axis), Just(start), start + 1..=n, Just(step))
            })
        })
    ) {
        let y = forward(|v| v[0].slice(axis, start, end, step), std::slice::from_ref(&x));
        let count = (end - start).div_ceil(step);
        prop_assert_eq!(y.shape()[axis], count);
        for j in 0..count {
            assert_close(
                &y.index_axis(Axis(axis), j).to_owned(),
                &x.index_axis(Axis(axis), start + j * step).to_owned(),
            );
        }
        assert_grad(|v| v[0].slice(axis, start, end, step), &[x]);
    }

    #[test]
    fn grad_narrow(
        (x, axis, start, len) in x_axis().prop_flat_map(|(x, axis)| {
            let n = x.shape()[axis];
            (Just(x), Just(axis), 0..n).prop_flat_map(move |(x, axis, start)| {
                (Just(x), Just(axis), Just(start), 1..=n - start)
            })
        })
    ) {
        let y = forward(|v| v[0].narrow(axis, start, len), std::slice::from_ref(&x));
        let expected = x.slice_axis(Axis(axis), Slice::from(start..start + len)).to_owned();
        assert_close(&y, &expected);
        assert_grad(|v| v[0].narrow(axis, start, len), &[x]);
    }

    #[test]
    fn grad_pad((x, axis) in x_axis(), before in 0..3usize, after in 0..3usize) {
        let y = forward(|v| v[0].pad(axis, before, after), std::slice::from_ref(&x));
        let n = x.shape()[axis];
        prop_assert_eq!(y.shape()[axis], n + before + after);
        for (idx, &v) in y.indexed_iter() {
            let mut src = idx.slice().to_vec();
            if (before..before + n).contains(&src[axis]) {
                src[axis] -= before;
                prop_assert_eq!(v, x[IxDyn(&src)]);
            } else {
                prop_assert_eq!(v, 0.0);
            }
        }
        assert_grad(|v| v[0].pad(axis, before, after), &[x]);
    }

    #[test]
    fn grad_concat(
        (parts, axis) in (shape(4, 4), vec(1..=4usize, 2..=3)).prop_flat_map(|(s, sizes)| {
            let rank = s.len();
            (Just(s), Just(sizes), 0..rank)
        }).prop_flat_map(|(s, sizes, axis)| {
            let parts: Vec<_> = sizes
                .iter()
                .map(|&n| {
                    let mut part_shape = s.clone();
                    part_shape[axis] = n;
                    tensor(part_shape, -3.0, 3.0)
                })
                .collect();
            (parts, Just(axis))
        })
    ) {
        let y = forward(|v| Var::concat(v, axis), &parts);
        let mut offset = 0;
        for p in &parts {
            let n = p.shape()[axis];
            let piece = y.slice_axis(Axis(axis), Slice::from(offset..offset + n)).to_owned();
            assert_close(&piece, p);
            offset += n;
        }
        prop_assert_eq!(y.shape()[axis], offset);
        assert_grad(|v| Var::concat(v, axis), &parts);
    }

    #[test]
    fn grad_stack(
        (parts, axis) in (shape(3, 4), 2..=3usize).prop_flat_map(|(s, count)| {
            let rank = s.len();
            (vec(tensor(s, -3.0, 3.0), count), 0..=rank)
        })
    ) {
        let y = forward(|v| Var::stack(v, axis), &parts);
        prop_assert_eq!(y.shape()[axis], parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert_close(&y.index_axis(Axis(axis), i).to_owned(), p);
        }
        assert_grad(|v| Var::stack(v, axis), &parts);
    }

    #[test]
    fn grad_broadcast_to(
        (x, target) in broadcast_pair(4, 4).prop_flat_map(|(sa, sb)| {
            let target = broadcast_shape("test", &sa, &sb);
            (tensor(sa, -3.0, 3.0), Just(target))
        })
    ) {
        let y = forward(|v| v[0].broadcast_to(&target), std::slice::from_ref(&x));
        let lead = target.len() - x.ndim();
        prop_assert_eq!(y.shape(), &target[..]);
        for (idx, &v) in y.indexed_iter() {
            let src: Vec<usize> = (0..x.ndim())
                .map(|a| if x.shape()[a] == 1 { 0 } else { idx[lead + a] })
                .collect();
            prop_assert_eq!(v, x[IxDyn(&src)]);
        }
        assert_grad(|v| v[0].broadcast_to(&target), &[x]);
    }

    #[test]
    fn grad_index_select(
        (x, axis, indices) in x_axis().prop_flat_map(|(x, axis)| {
            let n = x.shape()[axis];
            (Just(x), Just(axis), vec(0..n, 1..=5)).prop_map(|(x, axis, mut indices)| {
                indices.push(indices[0]); // always at least one repeat
                (x, axis, indices)
            })
        })
    ) {
        let y = forward(|v| v[0].index_select(axis, &indices), std::slice::from_ref(&x));
        prop_assert_eq!(y.shape()[axis], indices.len());
        for (j, &i) in indices.iter().enumerate() {
            assert_close(
                &y.index_axis(Axis(axis), j).to_owned(),
                &x.index_axis(Axis(axis), i).to_owned(),
            );
        }
        assert_grad(|v| v[0].index_select(axis, &indices), &[x]);
    }

    #[test]
    fn grad_gather(
        (x, axis, index) in x_axis().prop_flat_map(|(x, axis)| {
            let n = x.shape()[axis];
            let x_shape = x.shape().to_vec();
            (Just(x), Just(axis), 1..=4usize).prop_flat_map(move |(x, axis, k)| {
                let mut shape = x_shape.clone();
                shape[axis] = k;
                let size: usize = shape.iter().product();
                let index = vec(0..n, size).prop_map(move |v| {
                    ArrayD::from_shape_vec(IxDyn(&shape), v).expect("size matches")
                });
                (Just(x), Just(axis), index)
            })
        })
    ) {
        let y = forward(|v| v[0].gather(axis, &index), std::slice::from_ref(&x));
        prop_assert_eq!(y.shape(), index.shape());
        for (idx, &i) in index.indexed_iter() {
            let mut src = idx.slice().to_vec();
            src[axis] = i;
            prop_assert_eq!(y[&idx], x[IxDyn(&src)]);
        }
        assert_grad(|v| v[0].gather(axis, &index), &[x]);
    }
}
