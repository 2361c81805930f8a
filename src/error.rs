//! The crate's error type. Every message names the file, flag or tensor it is about and what was
//! wrong with it, so the command line can print it as one line.
//!
//! Style: `path: message` (or `--flag: message`), the message lowercase and without a trailing
//! period, e.g. `data/x.bin: length 3075 is not a whole number of 3073-byte records (2 bytes over)`.

use std::path::{Path, PathBuf};

/// Errors from parsing files, validating user input, and training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {}", lowercase_first(&source.to_string()))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Diverged(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// `message` with its first letter lowercased: operating-system messages ("No such file or
/// directory") follow the crate's lowercase style.
fn lowercase_first(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
