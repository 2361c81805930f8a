//! Ctrl-C (SIGINT) and SIGTERM during a run: say where the last checkpoint is and the exact
//! command that continues the run, then exit with 128 + the signal's number (130, 143) as shells
//! expect.
//!
//! The handler only records the signal (an atomic store is all a signal handler may safely do);
//! a watcher thread, polling every 20 ms, builds the message with ordinary code and exits. No
//! state needs saving at that point: every checkpoint is written atomically (temporary file, then
//! rename) at the end of an epoch, so the one on disk is always complete and resuming from it
//! repeats the interrupted epoch bit for bit. The watcher holds `io::atomic`'s write lock from
//! reading the checkpoint to the exit, so a checkpoint being written as the signal arrives is
//! finished first and none is written after the message names one. Hand-written rather than the `ctrlc` crate: two
//! `signal(2)` calls and a thread are all it takes, and no dependency is added for them. SIGPIPE
//! is put back to its default here too ([`restore_default_sigpipe`]).

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::io::atomic;
use crate::io::checkpoint::{self, Checkpoint};
use crate::run::dir::CHECKPOINT_FILE;
use crate::run::meta::CheckpointMeta;

#[cfg(unix)]
unsafe extern "C" {
    /// `signal(2)`: sets what `signum` does (a handler's address, or 0 = the default).
    fn signal(signum: i32, handler: usize) -> usize;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The signal received (0: none yet).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: i32) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// On SIGINT or SIGTERM, prints `error: ` + `message(signal name)` and exits with 128 + the
/// signal's number. Call once, when the run starts.
pub fn on_interrupt(message: impl Fn(&str) -> String + Send + 'static) {
    #[cfg(unix)]
    {
        let handler = record as extern "C" fn(i32) as usize;
        // SAFETY: `record` only stores to an atomic, which is async-signal-safe.
        unsafe {
            signal(SIGINT, handler);
            signal(SIGTERM, handler);
        }
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(20));
                let signal = RECEIVED.load(Ordering::SeqCst);
                if signal != 0 {
                    let name = if signal == SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    // Hold off checkpoint writes from here to the exit, so the checkpoint the
                    // message names is the one left on disk.
                    let _no_more_writes = atomic::hold_writes();
                    eprintln!("\nerror: {}", message(name));
                    std::process::exit(128 + signal);
                }
            }
        });
    }
}

/// The command line that ran this process, as `sparsegrad ARGS` with `--force` and `--resume`
/// left out, each argument quoted for a POSIX shell where needed.
pub fn command_line() -> String {
    let mut words = vec!["sparsegrad".to_string()];
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy().into_owned();
        if arg != "--force" && arg != "--resume" {
            words.push(shell_quote(&arg));
        }
    }
    words.join(" ")
}

/// `word` as one POSIX shell word.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What an interrupted `train` says: where its last checkpoint is (and the epochs it holds) and
/// the `--resume` command that continues from it, or, before the first checkpoint, the command
/// that starts again.
pub fn train_message(signal: &str, out: &Path, command: &str) -> String {
    let path = out.join(CHECKPOINT_FILE);
    if !path.exists() {
        return format!(
            "interrupted by {signal} before the first checkpoint; start again with: {command} \
             --force"
        );
    }
    let epochs = checkpoint::load::<f32>(&path)
        .ok()
        .and_then(|c: Checkpoint<f32>| CheckpointMeta::from_checkpoint(&c, &path).ok())
        .and_then(|m| m.state)
        .map(|s| format!(" ({} epochs done)", s.epoch))
        .unwrap_or_default();
    format!(
        "interrupted by {signal}; the last checkpoint is {}{epochs}; continue with: {command} \
         --resume",
        path.display()
    )
}

/// What an interrupted `posttrain` says (its runs are not resumable).
pub fn posttrain_message(signal: &str, command: &str) -> String {
    format!(
        "interrupted by {signal}; post-training runs are not resumable; start again with: \
         {command} --force"
    )
}

/// Ends the process quietly when stdout is a closed pipe (`sparsegrad report ... | head`), as
/// Unix tools do. Rust ignores SIGPIPE, which would make `println!` panic instead.
pub fn restore_default_sigpipe() {
    #[cfg(unix)]
    {
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: resetting a signal to its default disposition has no preconditions.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}
