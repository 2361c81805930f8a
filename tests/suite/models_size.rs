//! A model's size from its spec alone ([`ModelSpec::values`]), which `models::build` checks
//! before allocating anything: it equals what the built model holds, and an absurd spec (from a
//! damaged checkpoint's metadata or absurd images) is refused by name instead of exhausting
//! memory.

use proptest::prelude::*;
use sparsegrad::models::ModelName;
use sparsegrad::models::{MAX_MODEL_VALUES, ModelSpec, build};
use sparsegrad::rng::seeded;

fn spec(name: &str, input: (usize, usize, usize), classes: usize, width: f64) -> ModelSpec {
    ModelSpec {
        name: name.parse().unwrap(),
        input,
        classes,
        width,
    }
}

/// Every value the built model stores: its parameters and buffers.
fn built_values(spec: &ModelSpec) -> u128 {
    let model = build(spec, &mut seeded(0)).unwrap();
    let mut n = 0u128;
    model.visit("", &mut |_, p| n += p.value().len() as u128);
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn values_are_what_the_built_model_holds(
        name in prop::sample::select(<ModelName as clap::ValueEnum>::value_variants().iter().map(|m| m.as_str()).collect::<Vec<_>>()),
        c in 1usize..4,
        h in 16usize..40,
        w in 16usize..40,
        classes in 1usize..120,
        width in prop::sample::select(vec![0.25, 0.5, 1.0, 1.3]),
    ) {
        let width = if matches!(name, "mobilenet" | "fastgrnn") { width } else { 1.0 };
        let s = spec(name, (c, h, w), classes, width);
        prop_assert_eq!(s.values(), built_values(&s), "{:?}", s);
    }
}

#[test]
fn standard_sizes_match_the_documented_counts() {
    // Parameters plus buffers: LeNet-300-100 has no buffers.
    assert_eq!(spec("lenet300", (1, 28, 28), 10, 1.0).values(), 266_610);
    assert_eq!(spec("lenet5", (1, 28, 28), 10, 1.0).values(), 431_080);
}

#[test]
fn absurd_specs_are_refused_before_allocating() {
    let cases = [
        (
            spec("lenet300", (1, 65536, 65536), 10, 1.0),
            "--model lenet300 for 1x65536x65536 images and 10 classes at width 1.0 would hold \
             1288490220210 values, over the limit of 268435456",
        ),
        (
            spec("lenet300", (usize::MAX, usize::MAX, usize::MAX), 10, 1.0),
            "--model lenet300 for 18446744073709551615x18446744073709551615x18446744073709551615 \
             images and 10 classes at width 1.0 would hold more values than can be counted, over \
             the limit of 268435456",
        ),
        (
            spec("resnet20", (3, 32, 32), 1 << 40, 1.0),
            "--model resnet20 for 3x32x32 images and 1099511627776 classes at width 1.0 would \
             hold 71468256075907 values, over the limit of 268435456",
        ),
        (
            spec("mobilenet", (3, 32, 32), 10, 1e300),
            "--model mobilenet for 3x32x32 images and 10 classes at width 1e300 would hold \
             more values than can be counted, over the limit of 268435456",
        ),
    ];
    for (s, message) in cases {
        let err = build(&s, &mut seeded(0)).err().expect("refused");
        assert_eq!(err.to_string(), message);
    }
    assert!(MAX_MODEL_VALUES >= 10 * spec("mobilenet", (3, 32, 32), 100, 1.0).values());
}

/// What `load_model` can check before building (left to the CLI part of issue 15): the model its
/// metadata describes holds no more values than the file stores, for an export (exactly the
/// model's values) and a training checkpoint (the model's, its transforms' and the optimiser's).
#[test]
fn a_checkpoint_stores_at_least_the_values_of_its_model() {
    use sparsegrad::io::checkpoint::{Checkpoint, load};
    use sparsegrad::run::CheckpointMeta;
    let run = &crate::fuzz_formats::seed_runs_cached().train;
    for (name, exact) in [
        ("model.safetensors", true),
        ("checkpoint.safetensors", false),
    ] {
        let path = run.join(name);
        let ckpt: Checkpoint<f32> = load(&path).unwrap();
        let spec = CheckpointMeta::from_checkpoint(&ckpt, &path)
            .unwrap()
            .info
            .spec();
        let stored: u128 = ckpt.tensors.iter().map(|(_, t)| t.len() as u128).sum();
        if exact {
            assert_eq!(spec.values(), stored, "{name}");
        } else {
            assert!(
                spec.values() < stored,
                "{name}: {} > {stored}",
                spec.values()
            );
        }
    }
}
