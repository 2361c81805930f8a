//! The command line's bad-input paths: one exact `error: ...` line on stderr and a non-zero exit,
//! never a panic; and nothing lost when a command is refused.

use std::process::Command;

use crate::cli_support::{assert_error, run};
use crate::scratch::Scratch;

fn temp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("cli-{name}"))
}

/// A one-epoch default run into `out`, which must succeed.
fn train_one_epoch(out: &std::path::Path) {
    let (code, _, stderr) = run(&[
        "train",
        "--quiet",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn unknown_model_and_method() {
    assert_error(
        &["train", "--model", "vgg16"],
        "unknown --model `vgg16` (expected one of: lenet300, lenet5, resnet20, resnet32, resnet56, mobilenet, fastgrnn)",
    );
    // The list is the registry's, in table order (every method helper adds to it).
    let names: Vec<&str> = sparsegrad::methods::TrainMethod::ALL
        .iter()
        .map(|m| m.as_str())
        .collect();
    assert_eq!(&names[..4], ["dense", "str", "gmp", "magnitude"]);
    assert_error(
        &["train", "--method", "magic"],
        &format!(
            "unknown --method `magic` (expected one of: {})",
            names.join(", ")
        ),
    );
}

#[test]
fn bad_numbers() {
    assert_error(
        &["train", "--batch-size", "0"],
        "--batch-size must be at least 1",
    );
    assert_error(
        &["train", "--lr", "-0.1"],
        "--lr must be a positive number, got -0.1",
    );
    assert_error(&["train", "--epochs", "0"], "--epochs must be at least 1");
    assert_error(
        &["train", "--val-split", "1"],
        "--val-split must be in [0, 1), got 1",
    );
    assert_error(
        &["train", "--target-sparsity", "1.5"],
        "--target-sparsity must be in (0, 1), got 1.5",
    );
    assert_error(&["train", "--threads", "0"], "--threads must be at least 1");
    assert_error(
        &["train", "--schedule", "step:0:0.1"],
        "--schedule `step:0:0.1`: STEP_SIZE `0` is not a whole number >= 1",
    );
}

#[test]
fn missing_and_malformed_data_dirs() {
    let dir = temp_dir("data");
    let missing = dir.join("nope");
    assert_error(
        &[
            "train",
            "--data",
            missing.to_str().unwrap(),
            "--out",
            dir.join("run").to_str().unwrap(),
        ],
        &format!("{}: data directory does not exist", missing.display()),
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, stderr) = run(&[
        "train",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("error: {}: ", empty.display())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(bad.join(f), b"\x00\x00\x08\x01\x00\x00\x00\x05abc").unwrap();
    }
    assert_error(
        &[
            "train",
            "--data",
            bad.to_str().unwrap(),
            "--out",
            dir.join("run").to_str().unwrap(),
        ],
        &format!(
            "{}: has the shape of a labels file (dimensions [5]), not of images [N, H, W]",
            bad.join("train-images-idx3-ubyte").display()
        ),
    );
    assert!(
        !dir.join("run").exists(),
        "a refused run must not create its directory"
    );
}

/// Issue 15, item 1: test images of another size than the training images loaded, and `train`
/// panicked at its first evaluation (exit 101) leaving a half-written run directory.
#[test]
fn test_images_of_another_size_are_refused_before_the_run_starts() {
    let dir = temp_dir("split-shape");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let idx = |dims: &[u32], data: &[u8]| -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| out.extend(d.to_be_bytes()));
        out.extend(data);
        out
    };
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        idx(&[4, 28, 28], &[0; 4 * 784]),
    )
    .unwrap();
    std::fs::write(
        data.join("train-labels-idx1-ubyte"),
        idx(&[4], &[0, 1, 2, 3]),
    )
    .unwrap();
    std::fs::write(
        data.join("t10k-images-idx3-ubyte"),
        idx(&[2, 32, 32], &[0; 2 * 1024]),
    )
    .unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), idx(&[2], &[4, 5])).unwrap();
    for model in ["lenet300", "lenet5"] {
        assert_error(
            &[
                "train",
                "--model",
                model,
                "--data",
                data.to_str().unwrap(),
                "--out",
                dir.join("run").to_str().unwrap(),
            ],
            &format!(
                "{}: test images are 1x32x32 (channels x height x width) but the training images \
                 in {} are 1x28x28; both splits must have the same shape",
                data.join("t10k-images-idx3-ubyte").display(),
                data.join("train-images-idx3-ubyte").display()
            ),
        );
        assert!(
            !dir.join("run").exists(),
            "a refused run must not create its directory"
        );
    }
}

#[test]
fn existing_run_is_refused_and_kept() {
    let dir = temp_dir("existing");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.json"), "{}").unwrap();
    assert_error(
        &["train", "--out", out.to_str().unwrap()],
        &format!(
            "{} already holds a run; pass --force to overwrite it or --resume to continue it",
            out.display()
        ),
    );
    // --force with bad input elsewhere must not delete the old run either.
    assert_error(
        &[
            "train",
            "--out",
            out.to_str().unwrap(),
            "--force",
            "--data",
            "/nonexistent",
        ],
        "/nonexistent: data directory does not exist",
    );
    assert_eq!(
        std::fs::read_to_string(out.join("config.json")).unwrap(),
        "{}"
    );
    assert_error(
        &[
            "train",
            "--out",
            dir.join("fresh").to_str().unwrap(),
            "--resume",
        ],
        &format!(
            "--resume: {} holds no checkpoint.safetensors to resume from",
            dir.join("fresh").display()
        ),
    );
}

#[test]
fn resume_refuses_other_settings_and_other_models() {
    let dir = temp_dir("resume-model");
    let out = dir.join("run");
    train_one_epoch(&out);
    assert_error(
        &[
            "train",
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--resume",
            "--model",
            "lenet5",
            "--lr",
            "0.1",
        ],
        &format!(
            "--resume: the run in {} was started with other settings: --lr was 0.05, now 0.1; --model was \"lenet300\", now \"lenet5\"",
            out.display()
        ),
    );
}

#[test]
fn eval_rejects_bad_checkpoints() {
    let dir = temp_dir("eval");
    let bogus = dir.join("bogus.safetensors");
    std::fs::write(&bogus, b"not a checkpoint").unwrap();
    let (code, _, stderr) = run(&["eval", "--checkpoint", bogus.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!(
            "error: {}: not a valid safetensors file (",
            bogus.display()
        )),
        "{stderr}"
    );
    let missing = dir.join("missing.safetensors");
    assert_error(
        &["eval", "--checkpoint", missing.to_str().unwrap()],
        &format!(
            "{}: no such file or directory (os error 2)",
            missing.display()
        ),
    );
    assert_error(
        &["report", dir.to_str().unwrap()],
        &format!(
            "{} holds no summary.json (not a finished sparsegrad run)",
            dir.display()
        ),
    );
}

#[test]
fn report_compares_runs_and_a_closed_stdout_ends_it_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = temp_dir("pipe");
    let out = dir.join("run");
    train_one_epoch(&out);
    let (code, table, stderr) = run(&["report", out.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "header, rule, one row per run, then how best is selected:\n{table}"
    );
    assert_eq!(
        lines[5],
        format!("{}.", sparsegrad::run::best::BEST_RULE),
        "{table}"
    );
    assert!(
        lines[0].starts_with("| run | model | method | test acc |"),
        "{table}"
    );
    assert!(
        lines[2].starts_with(&format!("| {} | lenet300 | dense |", out.display())),
        "{table}"
    );
    assert_eq!(lines[2], lines[3]);
    // One unfinished run among several refuses the whole table, naming it.
    let missing = dir.join("missing");
    assert_error(
        &["report", out.to_str().unwrap(), missing.to_str().unwrap()],
        &format!(
            "{} holds no summary.json (not a finished sparsegrad run)",
            missing.display()
        ),
    );
    // Close the read end at once: `report` reads the run files before it prints, so its first
    // write meets a closed pipe (as in `sparsegrad report RUN | head -0`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args(["report", out.to_str().unwrap(), out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success() || status.code().is_none(), "{status:?}");
}
