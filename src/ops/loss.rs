//! Losses, composed from gradient-checked primitives (log_softmax, gather, mean, ...), so their
//! gradients need no code of their own. Each still has its own gradient check.

use ndarray::{ArrayD, IxDyn};

use crate::float::Float;
use crate::tape::Var;

impl<'t, F: Float> Var<'t, F> {
    /// Mean cross-entropy of logits `[N, C]` against integer labels, with PyTorch's label
    /// smoothing: loss = (1 - eps) * NLL + eps * mean_c(-log p_c).
    pub fn cross_entropy(self, labels: &[usize], label_smoothing: f64) -> Self {
        let shape = self.shape();
        assert!(
            shape.len() == 2 && shape[0] == labels.len(),
            "cross_entropy: logits {shape:?} do not match {} labels",
            labels.len()
        );
        assert!(
            (0.0..=1.0).contains(&label_smoothing),
            "cross_entropy: label smoothing {label_smoothing} is not in [0, 1]"
        );
        let log_p = self.log_softmax(1);
        let index =
            ArrayD::from_shape_vec(IxDyn(&[labels.len(), 1]), labels.to_vec()).expect("N x 1");
        let nll = log_p.gather(1, &index).mean().neg();
        if label_smoothing == 0.0 {
            return nll;
        }
        let uniform = log_p.mean().neg();
        nll.mul_scalar(1.0 - label_smoothing) + uniform.mul_scalar(label_smoothing)
    }

    /// Knowledge-distillation KL divergence KL(softmax(teacher/T) || softmax(student/T)), summed
    /// over classes, averaged over the batch and scaled by T^2 (Hinton et al.; keeps gradient
    /// magnitudes independent of T). `self` is the student's logits `[N, C]`.
    pub fn kl_div_logits(self, teacher: Self, temperature: f64) -> Self {
        assert_eq!(
            self.shape(),
            teacher.shape(),
            "kl_div_logits: student and teacher logits differ in shape"
        );
        assert!(
            temperature > 0.0,
            "kl_div_logits: temperature {temperature} must be positive"
        );
        let n = self.shape()[0] as f64;
        let inv_t = 1.0 / temperature;
        let log_q = self.mul_scalar(inv_t).log_softmax(1);
        let log_p = teacher.mul_scalar(inv_t).log_softmax(1);
        let p = log_p.exp();
        (p * (log_p - log_q))
            .sum()
            .mul_scalar(temperature * temperature / n)
    }

    /// Mean squared error against `target` (same shape, or broadcastable).
    pub fn mse(self, target: Self) -> Self {
        let d = self - target;
        (d * d).mean()
    }
}
