//! What every target shares: the input as a file (the readers take paths, as the command line
//! does), and the check that a failure is a one-line error naming that file.

use std::path::PathBuf;

/// Writes `data` to this process's scratch file `name` and returns its path.
pub fn as_file(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparsegrad-cargo-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// A failure must be `"{path}: message"` on one line.
pub fn check<T>(result: sparsegrad::error::Result<T>, path: &std::path::Path) {
    if let Err(e) = result {
        let message = e.to_string();
        let prefix = format!("{}: ", path.display());
        assert!(
            message.starts_with(&prefix) && message.len() > prefix.len(),
            "error does not name the file: {message}"
        );
        assert!(!message.contains('\n'), "error is not one line: {message}");
    }
}
