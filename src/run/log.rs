//! The run directory's JSON-lines logs (`metrics.jsonl`, one line per epoch; `posttrain.jsonl`,
//! one line per logging window): appended and flushed as the run goes, so an interrupted run
//! keeps every line it finished.

use std::fs::OpenOptions;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;

/// An append-only log of `T`s, one JSON object per line.
pub struct JsonLines<T> {
    path: PathBuf,
    line: PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> JsonLines<T> {
    /// A log at `path` keeping only the lines already there that `keep` accepts (a resumed run
    /// drops the lines of the epochs it will redo; a new run keeps none).
    pub fn open(path: &Path, keep: impl Fn(&T) -> bool) -> Result<Self> {
        let mut text = String::new();
        for line in Self::read(path)?.iter().filter(|l| keep(l)) {
            text += &serde_json::to_string(line).expect("log lines serialise");
            text.push('\n');
        }
        write_atomic(path, text.as_bytes())?;
        Ok(JsonLines {
            path: path.to_path_buf(),
            line: PhantomData,
        })
    }

    /// Appends one line and flushes it.
    pub fn append(&mut self, line: &T) -> Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let text = serde_json::to_string(line).expect("log lines serialise") + "\n";
        file.write_all(text.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Every line of an existing log (none if the file does not exist).
    pub fn read(path: &Path) -> Result<Vec<T>> {
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    Error::format(path, format!("line {}: invalid log line ({e})", i + 1))
                })
            })
            .collect()
    }
}
