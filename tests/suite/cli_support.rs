//! Running the `sparsegrad` binary from the tests, and checking its one-line errors.
#![allow(dead_code)] // each test binary uses a different subset

use std::process::Command;

use crate::scratch::Scratch;

/// Runs `sparsegrad args...`: (exit code, stdout, stderr); -1 when killed by a signal.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparsegrad"))
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sparsegrad COMMAND_LINE --out TEMP` fails with exactly `error: {message}` and exit code 1,
/// and leaves nothing at `TEMP`.
/// The temporary `--out` keeps a run that is wrongly accepted from writing into the repository.
pub fn assert_refused(command_line: &str, message: &str) {
    let scratch = Scratch::new("refused");
    let out = scratch.join("refused");
    let mut args: Vec<&str> = command_line.split_whitespace().collect();
    args.extend(["--out", out.to_str().unwrap()]);
    assert_error(&args, message);
    // Flags are checked before the run directory is touched.
    assert!(
        !out.exists(),
        "{command_line}: a refused run wrote {}",
        out.display()
    );
}

/// `sparsegrad args...` fails with exactly `error: {message}` on stderr and exit code 1.
pub fn assert_error(args: &[&str], message: &str) {
    let (code, _, stderr) = run(args);
    assert_eq!(stderr, format!("error: {message}\n"), "args {args:?}");
    assert_eq!(code, 1, "args {args:?}");
}
