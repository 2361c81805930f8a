//! Issue 15, item 6: Ctrl-C (SIGINT) or SIGTERM in the middle of `train` says where the last
//! checkpoint is and the exact `--resume` command, and exits with 128 + the signal (130, 143);
//! the printed command then finishes the run. A real child process gets a real signal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sparsegrad::io::checkpoint::{Checkpoint, load};
use sparsegrad::run::CheckpointMeta;

use crate::fuzz_formats::write_idx_dir;
use crate::scratch::Scratch;

/// Starts `train` for many epochs, waits for its first checkpoint, sends `signal`, and checks
/// the exit code and the message; then runs the printed command to the end.
fn interrupt_and_resume(name: &str, signal: &str, code: i32) {
    let dir = Scratch::new(&format!("signal-{name}"));
    let data = dir.join("data");
    write_idx_dir(&data, 2048, 64, 8, 8);
    let out = dir.join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args(["train", "--quiet", "--epochs", "200", "--batch-size", "8"])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoint = out.join("checkpoint.safetensors");
    let start = Instant::now();
    while !checkpoint.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let epochs = epochs_done(&checkpoint);
    assert!(epochs < 200);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let command = format!(
        "sparsegrad train --quiet --epochs 200 --batch-size 8 --data {} --out {}",
        data.display(),
        out.display()
    );
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: interrupted by SIG{signal}; the last checkpoint is {} ({epochs} epochs done); \
             continue with: {command} --resume",
            checkpoint.display()
        )
    );
    // The printed command continues the run (two more epochs here, to keep the test short).
    let resumed = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args(["train", "--quiet", "--epochs", "200", "--batch-size", "8"])
        .args([
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--resume")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while epochs_done(&checkpoint) <= epochs {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the resumed run made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &resumed.id().to_string()])
        .status();
    let output = resumed.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{output:?}");
}

/// Epochs done according to a checkpoint (0 while it is being replaced).
fn epochs_done(path: &Path) -> usize {
    load::<f32>(path)
        .ok()
        .and_then(|c: Checkpoint<f32>| CheckpointMeta::from_checkpoint(&c, path).ok())
        .and_then(|m| m.state)
        .map_or(0, |s| s.epoch)
}

#[test]
fn ctrl_c_says_where_the_checkpoint_is_and_how_to_resume() {
    interrupt_and_resume("int", "INT", 130);
}

#[test]
fn sigterm_says_the_same_and_exits_143() {
    interrupt_and_resume("term", "TERM", 143);
}
