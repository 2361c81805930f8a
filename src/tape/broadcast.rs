//! Broadcasting, handled once for every op: the shape two operands broadcast to, and the
//! reduction of a gradient that came back in the broadcast shape to its input's shape.

use ndarray::{Axis, IxDyn};

use crate::float::Float;
use crate::tensor::Tensor;

/// Sums `grad` over the axes that broadcasting expanded, giving an array of `shape`
/// (numpy rules: missing leading axes and axes of length 1 were broadcast).
pub fn sum_to_shape<F: Float>(grad: Tensor<F>, shape: &[usize]) -> Tensor<F> {
    if grad.shape() == shape {
        return grad;
    }
    assert!(
        grad.ndim() >= shape.len(),
        "cannot reduce a gradient of shape {:?} to {:?}",
        grad.shape(),
        shape
    );
    let mut g = grad;
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (axis, &len) in shape.iter().enumerate() {
        if len == 1 && g.shape()[axis] != 1 {
            g = g.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        }
    }
    assert_eq!(
        g.shape(),
        shape,
        "cannot reduce a gradient to shape {shape:?}"
    );
    g.into_shape_with_order(IxDyn(shape)).expect("same shape")
}

/// The numpy broadcast of two shapes (trailing axes aligned; each pair equal or one of them 1).
/// Panics with both shapes named when they are incompatible (a programming error, like a shape bug).
pub fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
    let ndim = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= ndim {
            s[i + s.len() - ndim]
        } else {
            1
        }
    };
    (0..ndim)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => panic!("op `{op}`: shapes {a:?} and {b:?} do not broadcast"),
        })
        .collect()
}
