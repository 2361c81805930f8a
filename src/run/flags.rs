//! Range checks of numeric flags, shared by every subcommand's config: each names the flag and
//! the value it refuses.

use crate::error::{Error, Result};
use crate::kernels::spin::with_spinning_workers;

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

/// Checks `--threads` ([`threads`]) and runs `work` on one worker of a rayon pool of that many
/// threads (all cores when `None`). Why on a worker, not on the calling thread: from outside
/// the pool, every parallel loop hands its data to a worker, so the serial and the parallel
/// parts of a training step run on different threads and the data moves between cores; with
/// one thread that measured 14-20% slower steps (ResNet-20, LeNet-5-Caffe). The other workers
/// spin for jobs while `work` runs instead of sleeping between parallel regions
/// ([`with_spinning_workers`]). The thread count never changes a result (every split is fixed by
/// the shapes).
pub fn on_threads<R: Send>(
    value: Option<usize>,
    work: impl FnOnce() -> Result<R> + Send,
) -> Result<R> {
    threads(value)?;
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = value {
        builder = builder.num_threads(n);
    }
    let pool = builder
        .build()
        .map_err(|e| Error::invalid(format!("--threads: {e}")))?;
    pool.install(|| with_spinning_workers(work))
}
