//! The training methods' command-line settings: every bad value or combination is refused with
//! one exact `error: ...` line naming the flag, before anything is written.

use crate::cli_support::assert_refused;

#[test]
fn str_settings() {
    assert_refused(
        "train --method str --str-granularity row",
        "unknown --str-granularity `row` (expected one of: layer, channel, global, weight, rank)",
    );
    assert_refused(
        "train --method str --str-g tanh",
        "unknown --str-g `tanh` (expected one of: sigmoid, exp)",
    );
    assert_refused(
        "train --method str --s-init inf",
        "--s-init must be a finite number, got inf",
    );
    assert_refused(
        "train --method str --threshold-decay -1",
        "--threshold-decay must be a non-negative number, got -1",
    );
    assert_refused(
        "train --method str --target-sparsity 0.9 --controller-weight 0",
        "--controller-weight must be a positive number, got 0",
    );
    assert_refused(
        "train --method str --target-sparsity 0.9 --controller-ramp 1",
        "--controller-ramp must be in [0, 1), got 1",
    );
    assert_refused(
        "train --method str --target-sparsity 0.9 --controller-loss square",
        "unknown --controller-loss `square` (expected one of: log, linear)",
    );
    assert_refused(
        "train --method str --target-sparsity 0.9 --strict-target --str-finish learned",
        "--strict-target needs the exact finish, and --str-finish learned turns it off",
    );
    assert_refused(
        "train --method str --strict-target",
        "--strict-target and --str-finish strict need --target-sparsity",
    );
    assert_refused(
        "train --method str --str-finish strict",
        "--strict-target and --str-finish strict need --target-sparsity",
    );
    for granularity in ["weight", "rank"] {
        assert_refused(
            &format!("train --method str --target-sparsity 0.9 --str-granularity {granularity}"),
            &format!(
                "--target-sparsity needs --str-granularity layer, channel or global (with `{granularity}` no threshold is shared by enough weights for the control loss to have a gradient)"
            ),
        );
    }
}

#[test]
fn str_target_must_fit_in_the_sparsified_layers() {
    assert_refused(
        "train --method str --target-sparsity 0.9 --first-layer-dense",
        "--target-sparsity 0.9 cannot be met with the dense layers kept dense (the other layers hold 11.6% of the weights)",
    );
}

#[test]
fn str_rank_needs_a_low_rank_model() {
    // `assert_refused` also checks that nothing was written.
    assert_refused(
        "train --method str --str-granularity rank",
        "--str-granularity rank needs a model with low-rank factorised weights (FastGRNN with a rank), and this one has none",
    );
}

#[test]
fn pruning_settings() {
    assert_refused("train --method gmp", "--method gmp needs --target-sparsity");
    assert_refused(
        "train --method magnitude --target-sparsity 0.9 --epochs 1",
        "--method magnitude needs --epochs 2 or more (dense training, then fine-tuning), got 1",
    );
    assert_refused(
        "train --method magnitude --target-sparsity 0.9 --prune-epoch 0",
        "--prune-epoch must be at least 1 (the epochs trained dense before pruning)",
    );
    assert_refused(
        "train --method magnitude --target-sparsity 0.9 --prune-epoch 10",
        "--prune-epoch (10) must be before the last epoch (--epochs 10)",
    );
    assert_refused(
        "train --method gmp --target-sparsity 0.9 --prune-every 0",
        "--prune-every must be at least 1",
    );
    assert_refused(
        "train --method gmp --target-sparsity 0.9 --prune-start 50 --prune-end 50",
        "--prune-start (50) must be before --prune-end (50)",
    );
    // Against the run's length (bundled data: 7,200 training images, 113 batches of 64).
    assert_refused(
        "train --method gmp --target-sparsity 0.9 --prune-end 5000",
        "--prune-end (5000) is past the run's last optimiser step (1130 = epochs x 113 steps)",
    );
    assert_refused(
        "train --method gmp --target-sparsity 0.9 --prune-start 900",
        "--prune-start (900) must be before --prune-end (791) (the run has 1130 = epochs x 113 steps)",
    );
    assert_refused(
        "train --method gmp --target-sparsity 0.95 --first-layer-dense",
        "--target-sparsity 0.95 cannot be met with the dense layers kept dense (the other layers hold 11.6% of the weights)",
    );
    assert_refused(
        "train --method magnitude --target-sparsity 0.9 --first-layer-dense --last-layer-dense --model lenet300",
        "--target-sparsity 0.9 cannot be met with the dense layers kept dense (the other layers hold 11.3% of the weights)",
    );
}

#[test]
fn l0_settings() {
    assert_refused(
        "train --method l0 --l0-lambda -1",
        "--l0-lambda must be non-negative numbers, got [-1.0]",
    );
    assert_refused(
        "train --method l0 --l0-drop-rate 0.5,1",
        "--l0-drop-rate must be in (0, 1), got [0.5, 1.0]",
    );
    assert_refused(
        "train --method l0 --l0-lambda 0.1,0.2",
        "--l0-lambda has 2 values, but the model has 3 gated layers (give one value, or one per layer)",
    );
    assert_refused(
        "train --method l0 --l0-drop-rate 0.2,0.5,0.5 --last-layer-dense",
        "--l0-drop-rate has 3 values, but the model has 2 gated layers (give one value, or one per layer)",
    );
    assert_refused(
        "train --method l0 --l0-l2 nan",
        "--l0-l2 must be a non-negative number, got NaN",
    );
    assert_refused(
        "train --method l0 --l0-lr-scale 0",
        "--l0-lr-scale must be a positive number, got 0",
    );
    assert_refused(
        "train --method l0 --l0-gates channel",
        "unknown --l0-gates `channel` (expected one of: neuron, weight)",
    );
    assert_refused(
        "train --method gmp --target-sparsity 0.9 --l0-lambda 1",
        "--l0-lambda is not used by --method gmp",
    );
}

#[test]
fn wanda_settings() {
    assert_refused(
        "posttrain --checkpoint missing.safetensors --target-sparsity 0.5 --method wanda --wanda-group row",
        "unknown --wanda-group `row` (expected one of: output, layer)",
    );
    assert_refused(
        "posttrain --checkpoint missing.safetensors --target-sparsity 0.5 --method lamp --wanda-one-pass",
        "--wanda-one-pass is not used by --method lamp",
    );
}

#[test]
fn sensitivity_settings() {
    assert_refused(
        "train --method sensitivity --sensitivity-lambda 1",
        "--sensitivity-lambda must be in [0, 1), got 1",
    );
    assert_refused(
        "train --method sensitivity --sensitivity-threshold -0.1",
        "--sensitivity-threshold must be a non-negative number, got -0.1",
    );
    assert_refused(
        "train --method sensitivity --epochs 3 --sensitivity-warmup 3",
        "--sensitivity-warmup (3 epochs) must be shorter than --epochs (3)",
    );
    assert_refused(
        "train --method sensitivity --sensitivity-variant class",
        "unknown --sensitivity-variant `class` (expected one of: unspecified, specified)",
    );
}
