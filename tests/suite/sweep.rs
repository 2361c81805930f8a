//! `sparsegrad sweep` and `sparsegrad report SWEEP_DIR`: a tiny sweep run here with 2 workers,
//! its aggregate checked against the individual summaries (n, mean, sample std), an incomplete
//! run listed and not averaged, then resumed to the same numbers; the same jobs.txt run by
//! `xargs -P`; and the sweep file's errors, refused before anything is written.

use std::path::Path;
use std::process::Command;

use sparsegrad::sweep::aggregate::{RunResult, aggregate, read_run};
use sparsegrad::sweep::scripts::read_manifest;

use crate::cli_support::run;
use crate::scratch::Scratch;

fn temp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("sweep-{name}"))
}

const TINY: &str = r#"
models = ["lenet300"]
seeds = [0, 1]
sparsities = [0.5]

[train_flags]
epochs = 1
batch-size = 256

[posttrain_flags]
iters = 4
warmup = 1
calib = 128
log-every = 2

[[train]]
method = "dense"

[[train]]
method = "gmp"

[[posttrain]]
method = "magnitude-uniform"
"#;

fn write_sweep_file(dir: &Path, text: &str) -> String {
    let file = dir.join("sweep.toml");
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

fn sweep(file: &str, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = out.display().to_string();
    let mut args = vec!["sweep", file, "--out", &out, "--quiet"];
    args.extend(extra);
    run(&args)
}

#[test]
fn tiny_sweep_runs_with_two_workers_and_aggregates_over_seeds() {
    let dir = temp_dir("tiny");
    let file = write_sweep_file(&dir, TINY);
    let out = dir.join("sweep");
    let (code, stdout, stderr) = sweep(&file, &out, &["--run", "2", "--threads", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("6 jobs (4 training, 2 post-training)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("6 run, 0 already complete, 0 failed"),
        "{stdout}"
    );
    let jobs_txt = std::fs::read_to_string(out.join("jobs.txt")).unwrap();
    assert_eq!(jobs_txt.lines().count(), 4);
    assert!(jobs_txt.lines().all(|l| l.contains(" train --finish ")));
    let after = std::fs::read_to_string(out.join("jobs.after.txt")).unwrap();
    assert_eq!(after.lines().count(), 2);
    let slurm = std::fs::read_to_string(out.join("slurm.sh")).unwrap();
    assert!(slurm.contains("SLURM_ARRAY_TASK_ID"));
    let submit = std::fs::read_to_string(out.join("submit.sh")).unwrap();
    assert!(
        submit.contains("--dependency=afterany:$first --array=1-2%"),
        "{submit}"
    );

    // One run made incomplete: its summary removed (an interrupted run keeps its checkpoint).
    let manifest = read_manifest(&out).unwrap();
    let gmp1 = manifest
        .jobs
        .iter()
        .find(|j| j.series == "gmp" && j.seed == 1)
        .unwrap();
    // Wall time is the one figure a rerun may change.
    let figures = |mut r: RunResult| {
        r.wall_seconds = 0.0;
        r
    };
    let gmp1_before = figures(read_run(&gmp1.out).unwrap());
    std::fs::remove_file(gmp1.out.join("summary.json")).unwrap();

    let agg = aggregate(&out).unwrap();
    assert_eq!(agg.incomplete.len(), 1);
    assert_eq!(agg.incomplete[0].run, gmp1.out.display().to_string());
    for setting in &agg.settings {
        let runs: Vec<_> = manifest
            .jobs
            .iter()
            .filter(|j| j.series == setting.series && j.target == setting.target)
            .filter_map(|j| read_run(&j.out).ok())
            .collect();
        let acc: Vec<f64> = runs.iter().map(|r| r.test_accuracy).collect();
        assert_eq!(setting.test_accuracy.n, acc.len(), "{}", setting.series);
        let mean = acc.iter().sum::<f64>() / acc.len() as f64;
        assert!((setting.test_accuracy.mean - mean).abs() < 1e-12);
        let std = if acc.len() == 2 {
            (acc[0] - acc[1]).abs() / 2f64.sqrt()
        } else {
            0.0
        };
        assert!(
            (setting.test_accuracy.std - std).abs() < 1e-12,
            "{}",
            setting.series
        );
    }
    let gmp = agg.settings.iter().find(|s| s.series == "gmp").unwrap();
    assert_eq!(
        (gmp.test_accuracy.n, gmp.seeds.as_slice()),
        (1, &[0u64][..])
    );
    let dense = agg.settings.iter().find(|s| s.series == "dense").unwrap();
    assert_eq!(dense.test_accuracy.n, 2);
    assert_eq!(dense.target, None);

    let (code, md, stderr) = run(&["report", &out.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(md.contains("## Incomplete runs (not averaged)"), "{md}");
    assert!(md.contains(&gmp1.out.display().to_string()), "{md}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + agg.settings.len());
    for f in [
        "results.md",
        "accuracy_vs_sparsity-lenet300.svg",
        "accuracy_vs_flops-lenet300.svg",
        "budget-lenet300-0.5.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }

    // Running again skips the complete runs and resumes the interrupted one to the same result.
    let (code, stdout, stderr) = sweep(&file, &out, &["--run", "2", "--threads", "2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("1 run, 5 already complete, 0 failed"),
        "{stdout}"
    );
    assert_eq!(figures(read_run(&gmp1.out).unwrap()), gmp1_before);
    assert!(aggregate(&out).unwrap().incomplete.is_empty());
}

#[test]
fn jobs_txt_runs_under_xargs_to_the_numbers_of_sweep_run() {
    let dir = temp_dir("xargs");
    let text = TINY.replace("seeds = [0, 1]", "seeds = [3]");
    let file = write_sweep_file(&dir, &text);
    let (here, there) = (dir.join("here"), dir.join("there"));
    let (code, _, stderr) = sweep(&file, &here, &["--run", "2", "--threads", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = sweep(&file, &there, &[]);
    assert_eq!(code, 0, "{stderr}");
    for phase in ["jobs.txt", "jobs.after.txt"] {
        let input = std::fs::File::open(there.join(phase)).unwrap();
        let status = Command::new("xargs")
            .args(["-d", "\n", "-P", "2", "-I", "{}", "sh", "-c", "{}"])
            .stdin(input)
            .status()
            .expect("xargs runs");
        assert!(status.success());
    }
    let (a, b) = (aggregate(&here).unwrap(), aggregate(&there).unwrap());
    assert!(b.incomplete.is_empty(), "{:?}", b.incomplete);
    assert_eq!(a.settings.len(), b.settings.len());
    for (x, y) in a.settings.iter().zip(&b.settings) {
        assert_eq!(
            (&x.series, x.test_accuracy.n),
            (&y.series, y.test_accuracy.n)
        );
        assert_eq!(x.test_accuracy.mean, y.test_accuracy.mean, "{}", x.series);
        assert_eq!(x.layers, y.layers, "{}", x.series);
    }
}

fn assert_refused(text: &str, message: &str) {
    let dir = temp_dir("refused");
    let file = write_sweep_file(&dir, text);
    let out = dir.join("sweep");
    let (code, _, stderr) = sweep(&file, &out, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(message), "expected `{message}` in {stderr}");
    assert!(!out.join("jobs.txt").exists(), "nothing written");
}

#[test]
fn sweep_files_with_errors_are_refused_before_anything_is_written() {
    let head = "models = [\"lenet300\"]\nsparsities = [0.9]\n";
    assert_refused(
        &format!("{head}[[train]]\nmethod = \"strr\"\n"),
        "[[train]] `strr`: unknown --method `strr`",
    );
    assert_refused(
        &format!("{head}[[train]]\nmethod = \"gmp\"\nstr-g = \"exp\"\n"),
        "[[train]] `gmp`: lenet300: --str-g is not used by --method gmp",
    );
    assert_refused(
        &format!("{head}[[train]]\nmethod = \"dense\"\nsparsities = [0.5]\n"),
        "--method dense takes no --target-sparsity",
    );
    assert_refused(
        &format!("{head}[[train]]\nmethod = \"dense\"\nseed = 3\n"),
        "flag `seed` is set by the sweep itself",
    );
    assert_refused(
        &format!("{head}[[train]]\nmethod = \"dense\"\nepochs = 0\n"),
        "--epochs must be at least 1",
    );
    assert_refused(
        &format!("{head}[[posttrain]]\nmethod = \"wanda\"\n"),
        "no [[train]] entry named `dense`",
    );
    assert_refused(&format!("{head}modles = 1\n"), "unknown key `modles`");
    assert_refused(
        &format!("{head}[train_flags.lenet3000]\nepochs = 2\n[[train]]\nmethod = \"dense\"\n"),
        "a table `lenet3000` of flags names no model: unknown --model `lenet3000` (expected one of: lenet300, lenet5,",
    );
}

#[test]
fn the_results_sweep_file_expands() {
    let dir = temp_dir("results");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sweeps/results.toml");
    let (code, stdout, stderr) = sweep(file, &dir, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("357 jobs (231 training, 126 post-training)"),
        "{stdout}"
    );
    // `--model` narrows the file; the other models' flag tables are simply not used.
    let narrowed = dir.join("lenet5-only");
    let (code, stdout, stderr) = sweep(file, &narrowed, &["--model", "lenet5"]);
    assert_eq!(code, 0, "{stderr}");
    // Entries that name their own models (the lottery entries, lenet300 only) are narrowed
    // away too.
    assert!(
        stdout.contains("174 jobs (111 training, 63 post-training)"),
        "{stdout}"
    );
    let jobs = std::fs::read_to_string(narrowed.join("jobs.txt")).unwrap();
    assert!(!jobs.is_empty());
    assert!(
        jobs.lines().all(|l| l.contains("--model lenet5 ")),
        "{jobs}"
    );
}
