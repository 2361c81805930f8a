#!/usr/bin/env bash
# Reproduces every run behind docs/results.md on the bundled MNIST-10k and prints the tables.
#
#   bash tools/results_grid.sh train      # issue 5: dense / STR / GMP / magnitude, LeNet-300-100 and LeNet-5
#   bash tools/results_grid.sh seeds      # seeds 1 and 2 of STR and GMP at 95/98/99%
#   bash tools/results_grid.sh posttrain  # issue 6: FCPTS and the post-training baselines over r0
#   bash tools/results_grid.sh tables     # the Markdown tables of whatever has run
#
# Runs go to runs/results/ (existing runs are skipped, so an interrupted grid resumes).
# THREADS (default 2) sets --threads; wall times in the tables are for that count.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/sparsegrad
root=runs/results
threads=${THREADS:-2}
models=(lenet300 lenet5)
targets=(0.90 0.95 0.98 0.99)
ratios=(0.5 0.6 0.7 0.8 0.9 0.95)
baselines=(magnitude-uniform magnitude-erk magnitude-global magnitude-l2norm lamp)

train() { # out, flags...
    local out=$root/$1; shift
    [[ -f $out/summary.json ]] && return
    echo "== train $out" >&2
    $bin train --quiet --force --threads "$threads" --out "$out" "$@" >/dev/null
}

posttrain() { # out, flags...
    local out=$root/$1; shift
    [[ -f $out/summary.json ]] && return
    echo "== posttrain $out" >&2
    $bin posttrain --quiet --force --threads "$threads" --out "$out" "$@" >/dev/null
}

run_train_grid() {
    for m in "${models[@]}"; do
        train "$m/dense" --model "$m"
        train "$m/str" --model "$m" --method str
        for s in "${targets[@]}"; do
            train "$m/str-$s" --model "$m" --method str --target-sparsity "$s"
            train "$m/gmp-$s" --model "$m" --method gmp --target-sparsity "$s"
            train "$m/magnitude-$s" --model "$m" --method magnitude --target-sparsity "$s"
        done
    done
}

run_posttrain_grid() {
    for m in "${models[@]}"; do
        train "$m/dense" --model "$m"
        local ckpt=$root/$m/dense/model.safetensors
        for r in "${ratios[@]}"; do
            posttrain "$m/post/fcpts-paper-$r" --checkpoint "$ckpt" --target-sparsity "$r" --method fcpts --variant paper
            posttrain "$m/post/fcpts-code-$r" --checkpoint "$ckpt" --target-sparsity "$r" --method fcpts --variant code
            for b in "${baselines[@]}"; do
                posttrain "$m/post/$b-$r" --checkpoint "$ckpt" --target-sparsity "$r" --method "$b"
                posttrain "$m/post/$b-nofinetune-$r" --checkpoint "$ckpt" --target-sparsity "$r" --method "$b" --no-finetune
            done
        done
    done
}

run_seed_grid() { # seeds 1 and 2 of STR and GMP where the claim is decided
    for m in "${models[@]}"; do
        for seed in 1 2; do
            for s in 0.95 0.98 0.99; do
                train "$m/seed$seed/str-$s" --model "$m" --method str --target-sparsity "$s" --seed "$seed"
                train "$m/seed$seed/gmp-$s" --model "$m" --method gmp --target-sparsity "$s" --seed "$seed"
            done
        done
    done
}

tables() {
    for m in "${models[@]}"; do
        local runs=()
        for d in dense str; do runs+=("$root/$m/$d"); done
        for s in "${targets[@]}"; do
            for d in str gmp magnitude; do runs+=("$root/$m/$d-$s"); done
        done
        echo "### $m: training-time sparsity"
        $bin report "${runs[@]}"
        echo
        runs=()
        for r in "${ratios[@]}"; do
            runs+=("$root/$m/post/fcpts-paper-$r" "$root/$m/post/fcpts-code-$r")
            for b in "${baselines[@]}"; do runs+=("$root/$m/post/$b-$r"); done
            for b in "${baselines[@]}"; do runs+=("$root/$m/post/$b-nofinetune-$r"); done
        done
        echo "### $m: post-training sparsity"
        $bin report "${runs[@]}"
        echo
    done
}

case "${1:-}" in
    train) run_train_grid ;;
    seeds) run_seed_grid ;;
    posttrain) run_posttrain_grid ;;
    tables) tables ;;
    *) echo "usage: $0 train|seeds|posttrain|tables" >&2; exit 2 ;;
esac
