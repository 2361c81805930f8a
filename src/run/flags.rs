//! Range checks of numeric flags, shared by every subcommand's config: each names the flag and
//! the value it refuses.

use crate::error::{Error, Result};

/// `value` in (0, 1) (`lo_open`) or [0, 1).
pub fn fraction(flag: &str, value: f64, lo_open: bool) -> Result<()> {
    let ok = if lo_open {
        value > 0.0 && value < 1.0
    } else {
        (0.0..1.0).contains(&value)
    };
    if ok {
        Ok(())
    } else {
        let range = if lo_open { "(0, 1)" } else { "[0, 1)" };
        Err(Error::invalid(format!(
            "{flag} must be in {range}, got {value}"
        )))
    }
}

/// `value` finite and >= 0.
pub fn non_negative(flag: &str, value: f64) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} must be a non-negative number, got {value}"
        )))
    }
}

/// `value` finite and > 0.
pub fn positive(flag: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{flag} must be a positive number, got {value}"
        )))
    }
}

/// `--threads`: at least 1, and at most the cores this machine offers (more only slows a run
/// down: every thread count gives the same result). `std::thread::available_parallelism` is the
/// count (it honours CPU affinity and cgroup quotas).
pub fn threads(value: Option<usize>) -> Result<()> {
    let Some(n) = value else { return Ok(()) };
    if n == 0 {
        return Err(Error::invalid("--threads must be at least 1"));
    }
    let available = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n > available {
        return Err(Error::invalid(format!(
            "--threads {n} is more than the {available} cores available here (results are the \
             same for any thread count; more threads than cores only slow the run down)"
        )));
    }
    Ok(())
}

/// A path flag whose value is saved in JSON (`config.json`, checkpoint metadata), which needs it
/// to be UTF-8: refused here, before anything is written, instead of after the directory exists.
pub fn utf8_path(flag: &str, path: Option<&std::path::Path>) -> Result<()> {
    match path {
        Some(p) if p.to_str().is_none() => Err(Error::invalid(format!(
            "{flag} {}: the path is not valid UTF-8 (it is saved in the run's JSON files)",
            p.display()
        ))),
        _ => Ok(()),
    }
}

/// A count of at least one.
pub fn at_least_one(flag: &str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(Error::invalid(format!("{flag} must be at least 1")))
    }
}

/// Checks `--threads` ([`threads`]) and, when given, sizes rayon's global pool to it (once, before
/// any parallel work).
pub fn use_threads(value: Option<usize>) -> Result<()> {
    threads(value)?;
    if let Some(n) = value {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::invalid(format!("--threads: {e}")))?;
    }
    Ok(())
}
