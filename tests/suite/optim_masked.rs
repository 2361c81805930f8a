//! SGD's fused masked update (`Optimizer::update_masked`, one pass) against the reference
//! sequence of separate passes (`optim::update_masked_in_passes`: mask the gradient, update,
//! mask the momentum, mask the value), bit for bit, over random values, masks that change
//! between steps (so pruned entries start with nonzero value and momentum), binary and scaling
//! masks, and every SGD variant. Sizes include one above the parallel split, run on 1 and 3
//! threads. Then the forward pass's use of that zeroing (`Var::mask_prezeroed`).

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use sparsegrad::nn::{Linear, Module};
use sparsegrad::optim::{Hyper, Optimizer, Sgd, SgdConfig, step, update_masked_in_passes};
use sparsegrad::param::Param;
use sparsegrad::rng::{seeded, standard_normal, uniform};
use sparsegrad::sparsity::Mask;
use sparsegrad::tape::{Tape, Tensor};

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

/// Whether `layer`'s effective weight on a fresh tape is the raw weight's own buffer, and its
/// value.
fn effective_on_tape(layer: &Linear<f32>) -> (bool, Tensor<f32>) {
    let tape = Tape::<f32>::new();
    let effective = layer.weight.on(&tape);
    let shared = std::ptr::eq(&*effective.value(), layer.weight.raw.value());
    (shared, (*effective.value()).clone())
}

/// After the optimiser's masked update (or `reapply_mask`) the forward pass uses the raw weight as
/// its own masked value, the same buffer (`Var::mask_prezeroed`); a change to the raw weight or
/// the mask since then makes it compute W ⊙ m again. The value is W ⊙ m's bits throughout.
#[test]
fn masked_forward_shares_the_zeroed_raw_weight_until_it_changes() {
    let mut rng = seeded(3);
    let mut layer = Linear::<f32>::new(12, 4, false, &mut rng);
    let coin = |rng: &mut _| {
        if uniform(rng, 0.0, 1.0) < 0.5 {
            0.0
        } else {
            1.0
        }
    };
    let mask = ArrayD::from_shape_simple_fn(IxDyn(&[4, 12]), || coin(&mut rng));
    let pruned = mask.iter().position(|&m| m == 0.0).expect("a pruned entry");
    layer.weight.transform = Some(Box::new(Mask::from_tensor(mask.clone()).expect("0/1")));
    let masked_bits = |layer: &Linear<f32>| bits(&layer.weight.effective());

    // A fresh mask on an unmasked raw weight: computed.
    let (shared, value) = effective_on_tape(&layer);
    assert!(!shared);
    assert_eq!(bits(&value), masked_bits(&layer));

    layer.weight.reapply_mask();
    let (shared, value) = effective_on_tape(&layer);
    assert!(shared, "re-masked raw weight not passed through");
    assert_eq!(bits(&value), masked_bits(&layer));

    // One SGD step with momentum and weight decay: the masked update leaves it zeroed.
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..SgdConfig::default()
    });
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[8, 12]), || standard_normal(&mut rng) as f32);
    let labels: Vec<usize> = (0..8).map(|i| i % 4).collect();
    for _ in 0..2 {
        let tape = Tape::<f32>::new();
        let loss = layer
            .forward(tape.constant(x.clone()))
            .cross_entropy(&labels, 0.0);
        step(&mut opt, &mut layer, &loss.backward());
        let (shared, value) = effective_on_tape(&layer);
        assert!(shared, "raw weight after a masked step not passed through");
        assert_eq!(bits(&value), masked_bits(&layer));
    }

    // The raw weight written at a pruned entry, not re-masked: computed, the entry stays 0.
    layer
        .weight
        .raw
        .value_mut()
        .as_slice_mut()
        .expect("contiguous")[pruned] = 5.0;
    let (shared, value) = effective_on_tape(&layer);
    assert!(!shared, "a changed raw weight was passed through");
    assert_eq!(value.as_slice().expect("contiguous")[pruned], 0.0);
    assert_eq!(bits(&value), masked_bits(&layer));
    layer.weight.reapply_mask();
    assert!(effective_on_tape(&layer).0);

    // A new raw parameter brought to the recorded version without re-masking: computed.
    let version = layer.weight.raw.version();
    let mut replacement = Param::new(layer.weight.raw.value().mapv(|_| 1.0f32));
    while replacement.version() < version {
        replacement.value_mut();
    }
    let kept = std::mem::replace(&mut layer.weight.raw, replacement);
    let (shared, value) = effective_on_tape(&layer);
    assert!(!shared, "a replaced raw weight was passed through");
    assert_eq!(bits(&value), masked_bits(&layer));
    layer.weight.raw = kept;
    assert!(effective_on_tape(&layer).0);

    // A new mask, not yet applied to the raw weight: computed.
    let flipped = mask.mapv(|m| 1.0 - m);
    let transform = layer.weight.transform.as_mut().expect("mask");
    let new_mask = transform
        .as_any_mut()
        .downcast_mut::<Mask<f32>>()
        .expect("a Mask");
    new_mask.set(flipped).expect("0/1");
    let (shared, value) = effective_on_tape(&layer);
    assert!(
        !shared,
        "a raw weight zeroed for the old mask was passed through"
    );
    assert_eq!(bits(&value), masked_bits(&layer));
}

/// A mask's zeros are stored as +0.0 (a -0.0 would make W ⊙ m differ in sign from the raw weight
/// the forward pass shares), whether given at construction or by `set`.
#[test]
fn masks_store_positive_zeros() {
    let given = ArrayD::from_shape_vec(IxDyn(&[4]), vec![-0.0f32, 1.0, 0.0, -0.0]).expect("4");
    let mut mask = Mask::from_tensor(given.clone()).expect("0/1");
    assert_eq!(bits(mask.values()), bits(&given.mapv(|m| m + 0.0)));
    mask.set(given.mapv(|m| if m == 0.0 { 1.0 } else { -0.0 }))
        .expect("0/1");
    assert_eq!(
        bits(mask.values()),
        [1.0f32, 0.0, 1.0, 1.0].map(f32::to_bits)
    );
}
