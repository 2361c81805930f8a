//! SGD's fused masked update (`Optimizer::update_masked`, one pass) against the reference
//! sequence of separate passes (`optim::update_masked_in_passes`: mask the gradient, update,
//! mask the momentum, mask the value), bit for bit, over random values, masks that change
//! between steps (so pruned entries start with nonzero value and momentum), binary and scaling
//! masks, and every SGD variant. Sizes include one above the parallel split, run on 1 and 3
//! threads.

use ndarray::IxDyn;
use proptest::prelude::*;
use sparsegrad::optim::{Hyper, Optimizer, Sgd, SgdConfig, update_masked_in_passes};
use sparsegrad::tape::Tensor;

/// One step's gradient and mask.
type Step = (Vec<f32>, Vec<f32>);

fn tensor(values: &[f32]) -> Tensor<f32> {
    Tensor::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).expect("1-D")
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

/// `steps` masked updates of one parameter by a fused and a reference optimiser; panics at the
/// first step where value or momentum differ in any bit.
fn check_same_bits(config: &SgdConfig, w0: &[f32], steps: &[Step]) {
    let hyper = Hyper {
        lr: config.lr,
        weight_decay: config.weight_decay,
    };
    let (mut fused, mut passes) = (Sgd::new(config.clone()), Sgd::new(config.clone()));
    let (mut w_fused, mut w_passes) = (tensor(w0), tensor(w0));
    for (step, (grad, mask)) in steps.iter().enumerate() {
        let (grad, mask) = (tensor(grad), tensor(mask));
        fused.update_masked("w", &mut w_fused, &grad, hyper, &mask);
        update_masked_in_passes(&mut passes, "w", &mut w_passes, &grad, hyper, &mask);
        assert_eq!(
            bits(&w_fused),
            bits(&w_passes),
            "value, step {step}, {config:?}"
        );
        let momentum = |o: &Sgd<f32>| o.momentum_buffer("w").map(bits);
        assert_eq!(momentum(&fused), momentum(&passes), "momentum, step {step}");
    }
}

fn configs() -> Vec<SgdConfig> {
    let base = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..SgdConfig::default()
    };
    vec![
        base.clone(),
        SgdConfig {
            nesterov: true,
            ..base.clone()
        },
        SgdConfig {
            dampening: 0.25,
            ..base.clone()
        },
        SgdConfig {
            decoupled: true,
            ..base.clone()
        },
        SgdConfig {
            momentum: 0.0,
            ..base
        },
    ]
}

/// A mask entry: pruned (most often), kept, or a scaling mask value.
fn mask_entry() -> impl Strategy<Value = f32> {
    prop_oneof![3 => Just(0.0f32), 3 => Just(1.0f32), 1 => Just(0.5f32), 1 => Just(-0.0f32)]
}

fn steps(len: usize) -> impl Strategy<Value = Vec<Step>> {
    let grad = prop::collection::vec(-4.0f32..4.0, len);
    let mask = prop::collection::vec(mask_entry(), len);
    prop::collection::vec((grad, mask), 1..4)
}

fn case() -> impl Strategy<Value = (Vec<f32>, Vec<Step>)> {
    (1usize..80).prop_flat_map(|len| (prop::collection::vec(-3.0f32..3.0, len), steps(len)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fused_masked_sgd_matches_the_separate_passes((w0, steps) in case()) {
        for config in configs() {
            check_same_bits(&config, &w0, &steps);
        }
    }
}

/// Above `kernels::parallel`'s split size, so the fused loop runs in chunks over threads.
#[test]
fn fused_masked_sgd_matches_the_separate_passes_when_split_over_threads() {
    let len = 150_001;
    let value = |i: usize, salt: usize| ((i * 7919 + salt * 104_729) % 2001) as f32 / 500.0 - 2.0;
    let w0: Vec<f32> = (0..len).map(|i| value(i, 1)).collect();
    let steps: Vec<Step> = (0..3)
        .map(|s| {
            let grad = (0..len).map(|i| value(i, s + 2)).collect();
            let mask = (0..len)
                .map(|i| if (i * 31 + s * 17) % 7 < 3 { 1.0 } else { 0.0 })
                .collect();
            (grad, mask)
        })
        .collect();
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            for config in configs() {
                check_same_bits(&config, &w0, &steps);
            }
        });
    }
}
