//! The STR and fixed-mask training steps against the dense one, interleaved: what each variant
//! costs over dense, measured so that the speed drift of a shared VM (20-50% within minutes,
//! `docs/speed.md`) cancels. `train_step` times the variants one after the other with criterion,
//! seconds apart, so its medians can differ by more than the cost being measured.
//!
//! Here the three variants of a model (the same steps as `train_step`, from `train_setup`) run in
//! rounds: each round times a block of steps of every variant, alternating their order between
//! rounds. Disturbances only ever add time, so a block is summarised by its lower quartile, and a
//! variant's cost is the median over rounds of its block's lower quartile over dense's in the
//! same round (the lowest and highest round beside it). The fastest step and the median step of
//! each variant over all rounds are printed too.
//!
//! `cargo bench --bench train_step_paired [-- MODEL ...]` (default: lenet300-100 lenet5-caffe;
//! resnet20 takes about a minute per thread count); `RAYON_NUM_THREADS` sets the threads.

use std::time::Instant;

mod train_setup;

use train_setup::TrainStep;

const VARIANTS: [&str; 3] = ["dense", "str", "mask"];
const ROUNDS: usize = 20;
/// Each variant's block of steps in a round lasts about this long.
const BLOCK_SECONDS: f64 = 0.1;
const WARM_UP_STEPS: usize = 3;

fn main() {
    sparsegrad::alloc::tune_allocator();
    let mut models: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if models.is_empty() {
        models = vec!["lenet300-100".into(), "lenet5-caffe".into()];
    }
    if let Some(bad) = models
        .iter()
        .find(|m| !train_setup::MODELS.contains(&m.as_str()))
    {
        eprintln!(
            "train_step_paired: no model `{bad}` (one of {:?})",
            train_setup::MODELS
        );
        std::process::exit(2);
    }
    sparsegrad::run::flags::on_threads(None, || {
        for model in &models {
            measure(model);
        }
        Ok(())
    })
    .expect("rayon pool");
}

fn measure(model: &str) {
    let mut steps: Vec<TrainStep> = VARIANTS.iter().map(|v| TrainStep::new(model, v)).collect();
    for step in &mut steps {
        for _ in 0..WARM_UP_STEPS {
            step.run();
        }
    }
    let per_block = {
        let start = Instant::now();
        steps[0].run();
        ((BLOCK_SECONDS / start.elapsed().as_secs_f64()) as usize).max(1)
    };
    let mut step_ms: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..ROUNDS {
        let mut block_quartile = vec![0.0; VARIANTS.len()];
        let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let mut block: Vec<f64> = (0..per_block)
                .map(|_| {
                    let start = Instant::now();
                    steps[i].run();
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            block_quartile[i] = quantile(&mut block, 0.25);
            step_ms[i].extend(block);
        }
        for (i, r) in ratios.iter_mut().enumerate() {
            r.push(block_quartile[i] / block_quartile[0]);
        }
    }
    println!(
        "{model}, {} thread(s): {ROUNDS} rounds of {per_block} steps per variant, interleaved",
        rayon::current_num_threads()
    );
    println!(
        "  variant  fastest ms  median ms  lower quartile / dense's, median of rounds [lowest, highest]"
    );
    for (i, variant) in VARIANTS.iter().enumerate() {
        let fastest = step_ms[i].iter().copied().fold(f64::INFINITY, f64::min);
        let all = quantile(&mut step_ms[i], 0.5);
        let (lowest, highest) = (ratios[i].iter().copied().fold(f64::INFINITY, f64::min), {
            ratios[i].iter().copied().fold(0.0, f64::max)
        });
        let ratio = quantile(&mut ratios[i], 0.5);
        println!("  {variant:7} {fastest:11.3} {all:10.3}  {ratio:.3} [{lowest:.3}, {highest:.3}]");
    }
}

/// The element at fraction `q` of the sorted values (the upper median for 0.5).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * q) as usize).min(values.len() - 1)]
}
