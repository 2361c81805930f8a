//! Atomic file replacement: write a temporary file next to the target, flush it to disk, rename it
//! over the target, then sync the directory. A crash leaves either the old file or the new one,
//! never a torn one.
//!
//! Every replacement holds one process-wide lock ([`hold_writes`]), so whoever else holds it
//! (the interrupt watcher, about to report the last checkpoint and exit) sees no write half done
//! and no write lands after it looked.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

static WRITES: Mutex<()> = Mutex::new(());

/// Waits for any [`write_atomic`] in progress and keeps new ones from starting while the guard
/// lives (a process about to exit can hold it to the end).
pub fn hold_writes() -> MutexGuard<'static, ()> {
    // A panic inside a write leaves no state behind to protect: ignore the poisoning.
    WRITES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replaces `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let _writing = hold_writes();
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Persist the rename itself; not every platform can open a directory, so ignore that.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
