//! The run directory: its file names, and what happens to a directory that already holds a run
//! (refused unless `--force` or `--resume`; `--force` removes only the run's own files).

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::io::json::read_json;

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const POSTTRAIN_LOG_FILE: &str = "posttrain.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const SPARSE_MODEL_FILE: &str = "model.sparse.safetensors";
pub const CURVES_FILE: &str = "curves.svg";
pub const SPARSITY_FILE: &str = "sparsity.svg";

/// Every file a run writes (training or post-training): all are replaced under `--force`.
pub const RUN_FILES: &[&str] = &[
    CONFIG_FILE,
    METRICS_FILE,
    POSTTRAIN_LOG_FILE,
    SUMMARY_FILE,
    CHECKPOINT_FILE,
    MODEL_FILE,
    SPARSE_MODEL_FILE,
    CURVES_FILE,
    SPARSITY_FILE,
];

/// The file of a method's extra export tagged `tag` (`Method::extra_exports`), or an error if
/// the tag is not lowercase letters, digits and `-`.
pub fn extra_model_file(tag: &str) -> Result<String> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if tag.is_empty() || !tag.chars().all(plain) {
        return Err(Error::invalid(format!(
            "extra export tag `{tag}`: only lowercase letters, digits and `-`"
        )));
    }
    Ok(format!("model.{tag}.safetensors"))
}

/// Whether `name` is an extra export's file (`model.{tag}.safetensors`).
fn is_extra_model_file(name: &str) -> bool {
    name.strip_prefix("model.")
        .and_then(|rest| rest.strip_suffix(".safetensors"))
        .is_some_and(|tag| extra_model_file(tag).is_ok())
}

/// What to do with a run directory that already holds a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse it (the default); `resumable` says whether `--resume` is offered in the message.
    Refuse { resumable: bool },
    /// Remove the run's files and start over (`--force`).
    Overwrite,
    /// Continue it (`--resume`; checked by the caller against its checkpoint).
    Resume,
}

/// Whether `dir` holds a run (a config, checkpoint, export or summary).
pub fn holds_run(dir: &Path) -> bool {
    [CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, SUMMARY_FILE]
        .iter()
        .any(|f| dir.join(f).exists())
}

/// Refuses an `--out` that names something other than a directory (or nothing yet).
pub fn check_out(out: &Path) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::invalid(format!(
            "--out {} names an existing file, not a directory; choose a directory for the run",
            out.display()
        )));
    }
    Ok(())
}

/// Makes `out` ready for a run under `policy`; `input` is a file the run reads, which must not
/// live in `out`. Call only once everything else is checked: this is the first write.
pub fn prepare(out: &Path, policy: Existing, input: Option<&Path>) -> Result<()> {
    check_out(out)?;
    if let Some(input) = input {
        let input_dir = input.parent().and_then(|p| {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            p.canonicalize().ok()
        });
        if input_dir.is_some() && input_dir == out.canonicalize().ok() {
            return Err(Error::invalid(format!(
                "--out {} holds the input --checkpoint; choose another directory",
                out.display()
            )));
        }
    }
    match policy {
        Existing::Resume => return Ok(()),
        Existing::Refuse { resumable } if holds_run(out) => {
            let resume = if resumable {
                " or --resume to continue it"
            } else {
                ""
            };
            return Err(Error::invalid(format!(
                "{} already holds a run; pass --force to overwrite it{resume}",
                out.display()
            )));
        }
        Existing::Overwrite => {
            for f in RUN_FILES {
                let _ = std::fs::remove_file(out.join(f));
            }
            for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
                if entry.file_name().to_str().is_some_and(is_extra_model_file) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Existing::Refuse { .. } => {}
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// Reads the `summary.json` of a finished run.
pub fn read_summary<T: DeserializeOwned>(run: &Path) -> Result<T> {
    let path = run.join(SUMMARY_FILE);
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{} holds no {SUMMARY_FILE} (not a finished sparsegrad run)",
            run.display()
        )));
    }
    read_json(&path)
}

/// Whether `run` was written by `sparsegrad posttrain`.
pub fn is_posttrain_run(run: &Path) -> bool {
    run.join(POSTTRAIN_LOG_FILE).exists()
}
