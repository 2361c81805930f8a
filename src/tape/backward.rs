//! The reverse pass: drains the tape back to front, calling each node's backward closure with the
//! gradient of its output, reducing broadcast gradients to their inputs' shapes and summing the
//! contributions of every use of a value.

use crate::float::Float;
use crate::grads::Grads;
use crate::kernels::parallel::add_assign;
use crate::tape::{Origin, Tape, sum_to_shape};
use crate::tensor::Tensor;

impl<F: Float> Tape<F> {
    /// Reverse pass from `root` seeded with `seed`. Drains the tape.
    pub(super) fn run_backward(&self, root: usize, seed: Tensor<F>) -> Grads<F> {
        let mut nodes = std::mem::take(&mut *self.nodes.borrow_mut());
        self.consumed.set(true);
        self.params.borrow_mut().clear();
        nodes.truncate(root + 1);
        let mut pending: Vec<Option<Tensor<F>>> = Vec::with_capacity(nodes.len());
        pending.resize_with(nodes.len(), || None);
        let mut grads = Grads::new();
        if nodes[root].requires_grad {
            pending[root] = Some(seed);
        }
        while let Some(node) = nodes.pop() {
            let id = nodes.len();
            let Some(grad) = pending[id].take() else {
                continue;
            };
            if node.retain && matches!(node.origin, Origin::Computed) {
                grads.insert(id, None, grad.clone());
            }
            let backward = match node.origin {
                Origin::Leaf => {
                    grads.insert(id, None, grad);
                    continue;
                }
                Origin::Param(pid) => {
                    grads.insert(id, Some(pid), grad);
                    continue;
                }
                Origin::Computed => match node.backward {
                    Some(backward) => backward,
                    None => continue,
                },
            };
            let needs: Vec<bool> = node
                .inputs
                .iter()
                .map(|&i| nodes[i].requires_grad)
                .collect();
            let input_grads = backward(grad, &needs);
            assert_eq!(
                input_grads.len(),
                node.inputs.len(),
                "op `{}` returned {} gradients for {} inputs",
                node.op,
                input_grads.len(),
                node.inputs.len()
            );
            for (&input, input_grad) in node.inputs.iter().zip(input_grads) {
                let Some(input_grad) = input_grad else {
                    continue;
                };
                if !nodes[input].requires_grad {
                    continue;
                }
                let input_grad = sum_to_shape(input_grad, nodes[input].value.shape());
                assert_eq!(
                    input_grad.shape(),
                    nodes[input].value.shape(),
                    "op `{}` returned a gradient of the wrong shape",
                    node.op
                );
                match &mut pending[input] {
                    Some(acc) => add_assign(acc, &input_grad),
                    slot @ None => *slot = Some(input_grad),
                }
            }
        }
        grads
    }
}
