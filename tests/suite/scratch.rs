//! A scratch directory under the system temp dir that removes itself when the test ends (kept,
//! and its path printed, if the test panicked, so the files can be inspected). Shared by the
//! suite and, through `#[path]`, by `tests/data_idx.rs`.
#![allow(dead_code)] // each test binary uses a different subset

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `sparsegrad-<label>-<pid>-<n>` under `std::env::temp_dir()`, created empty; removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("sparsegrad-{label}-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to the file `name` in the directory; its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept the failed test's scratch directory {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[test]
fn scratch_is_removed_when_dropped() {
    let scratch = Scratch::new("scratch-self-test");
    assert!(scratch.is_dir());
    let file = scratch.join("file.txt");
    std::fs::write(&file, "kept until the drop").unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "kept until the drop"
    );
    let path = scratch.path().to_path_buf();
    drop(scratch);
    assert!(!path.exists());
}
