//! FCPTS's control loss on its own, with no fix-up (issue 18, item 1): the fix-up at the end
//! would hide a sign or scale error in L_c = |sum_l r_l n_l / sum_l n_l - r0| (eq. 3) and its
//! gradient (eq. 8), so these tests never call `finish`.

use sparsegrad::methods::fcpts::{attach_thresholds, control_loss};
use sparsegrad::models::LeNet300;
use sparsegrad::nn::{Linear, Module, Weight, join};
use sparsegrad::ops::sparsity::Density;
use sparsegrad::optim::{Sgd, SgdConfig, step};
use sparsegrad::param::Param;
use sparsegrad::rng::{derived, seeded};
use sparsegrad::sparsity::{FcptsVariant, ThresholdMask};
use sparsegrad::tape::{Tape, Tensor, Var};

/// Two bias-free linear layers: a (2 x 2) and b (1 x 2).
struct Two {
    a: Linear<f32>,
    b: Linear<f32>,
}

impl Module<f32> for Two {
    fn forward<'t>(&mut self, x: Var<'t, f32>) -> Var<'t, f32> {
        let x = self.a.forward(x);
        self.b.forward(x)
    }
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Param<f32>)) {
        self.a.visit(&join(prefix, "a"), f);
        self.b.visit(&join(prefix, "b"), f);
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<f32>)) {
        self.a.visit_mut(&join(prefix, "a"), f);
        self.b.visit_mut(&join(prefix, "b"), f);
    }
    fn visit_weights<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Weight<f32>)) {
        self.a.visit_weights(&join(prefix, "a"), f);
        self.b.visit_weights(&join(prefix, "b"), f);
    }
    fn visit_weights_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Weight<f32>)) {
        self.a.visit_weights_mut(&join(prefix, "a"), f);
        self.b.visit_weights_mut(&join(prefix, "b"), f);
    }
}

fn linear(shape: [usize; 2], values: &[f32], t: f64) -> Linear<f32> {
    let mut layer = Linear::new(shape[1], shape[0], false, &mut seeded(0));
    let w = Tensor::from_shape_vec(ndarray::IxDyn(&shape), values.to_vec()).unwrap();
    layer.weight.raw.set_value(w);
    let score = (t / (1.0 - t)).ln();
    layer.weight.transform = Some(Box::new(ThresholdMask::<f32>::new(
        score,
        FcptsVariant::Code,
    )));
    layer
}

fn mask(w: &Weight<f32>) -> &ThresholdMask<f32> {
    w.transform
        .as_ref()
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

/// By hand, with a 4-bin histogram density (p = count / (n width) per bin):
/// layer a: w = (0.1, -0.2, 0.3, -0.4), bins of 0.175 over [-0.4, 0.3], one weight each, so
/// p = 1 / (4 x 0.175) = 1.428571 everywhere inside; t_a = 0.15 prunes {0.1}: r_a = 1/4, and
/// dr_a/dt = p(0.15) + p(-0.15) = 2.857143.
/// layer b: w = (0.5, -0.05), bins of 0.1375 over [-0.05, 0.5]; t_b = 0.06 prunes {-0.05}:
/// r_b = 1/2; p(0.06) = 1 / (2 x 0.1375) = 3.636364 (first bin), p(-0.06) = 0 (below min).
/// S = (4 x 1/4 + 2 x 1/2) / 6 = 1/3. Eq. 8 x eq. 11: dL_c/dt_l =
/// sign(S - r0) n_l / N dr_l/dt: for r0 = 0.5, -4/6 x 2.857143 = -1.904762 and
/// -2/6 x 3.636364 = -1.212121; for r0 = 0.2 the same with a plus sign. The scores get
/// dL/dt t (1 - t).
#[test]
fn control_loss_gradient_is_eq_8_by_hand() {
    let model = Two {
        a: linear([2, 2], &[0.1, -0.2, 0.3, -0.4], 0.15),
        b: linear([1, 2], &[0.5, -0.05], 0.06),
    };
    let density = Density::Histogram { bins: 4 };
    for (r0, sign) in [(0.5, -1.0), (0.2, 1.0)] {
        let tape = Tape::new();
        let loss = control_loss(&model, &tape, r0, &density).unwrap();
        assert!((loss.item() as f64 - (1.0 / 3.0 - r0).abs()).abs() < 1e-6);
        let grads = loss.backward();
        for (w, dl_dt) in [(&model.a.weight, 1.904762), (&model.b.weight, 1.212121)] {
            let t = mask(w).threshold() as f64;
            let got = grads.of(mask(w).score()).unwrap()[[]] as f64;
            let want = sign * dl_dt * t * (1.0 - t);
            assert!(
                (got - want).abs() < 1e-5 * want.abs(),
                "r0 {r0}: dL/dscore {got}, by hand {want}"
            );
        }
    }
}

/// From above and from below r0, SGD on L_c alone (no reconstruction loss, no fix-up) moves the
/// global sparsity of LeNet-300's thresholds toward r0.
#[test]
fn control_loss_alone_moves_sparsity_toward_r0_from_both_sides() {
    let sparsity = |model: &LeNet300<f32>| {
        let (mut zeros, mut total) = (0usize, 0usize);
        model.visit_weights("", &mut |_, w| {
            let eff = w.effective();
            zeros += eff.iter().filter(|v| **v == 0.0).count();
            total += eff.len();
        });
        zeros as f64 / total as f64
    };
    for (start, r0) in [(0.9, 0.6), (0.3, 0.6)] {
        let mut model = LeNet300::<f32>::new(784, 10, &mut derived(0, 1));
        attach_thresholds(&mut model, start, FcptsVariant::Code).unwrap();
        let before = sparsity(&model);
        let mut opt = Sgd::new(SgdConfig {
            lr: 0.5,
            ..SgdConfig::default()
        });
        for _ in 0..40 {
            let tape = Tape::new();
            let loss = control_loss(&model, &tape, r0, &Density::paper()).unwrap();
            let grads = loss.backward();
            step(&mut opt, &mut model, &grads);
        }
        let after = sparsity(&model);
        assert!(
            (after - r0).abs() < 0.5 * (before - r0).abs(),
            "start {start}, r0 {r0}: sparsity {before} -> {after}"
        );
    }
}
