//! What the fuzz properties share: the case budget, the ways a valid file is damaged, extreme
//! machine words, scratch files, and the check every reader's error must pass. The inputs of
//! each format are in `fuzz_formats`, JSON edits in `fuzz_json`.
//!
//! Used by `fuzz_parsers` (no panic, an error naming the file) and, through `#[path]` modules,
//! by the counting-allocator binary `tests/data_idx.rs` (memory bounded by the file's size).
#![allow(dead_code)] // each binary uses a different subset

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

/// Environment variable that sets the number of cases of every fuzz property (a long run:
/// `SPARSEGRAD_FUZZ_CASES=100000 cargo test --release fuzz_`).
pub const CASES_VAR: &str = "SPARSEGRAD_FUZZ_CASES";

/// `default_cases` (a few seconds on CI) unless [`CASES_VAR`] asks for more.
pub fn fuzz_config(default_cases: u32) -> ProptestConfig {
    let cases = match std::env::var(CASES_VAR) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{CASES_VAR}={v:?} is not a whole number")),
        Err(_) => default_cases,
    };
    ProptestConfig {
        cases,
        // A failing input is shrunk to a small one; bounded so a long run reports promptly.
        max_shrink_iters: 2048,
        // Findings become named regression tests next to the reader's tests, not seed files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- damage ----------------------------------------------------------------------------------

/// Where an edit lands: in the first 64 bytes (where headers live) or anywhere.
#[derive(Clone, Debug)]
pub enum Pos {
    Head(usize),
    Anywhere(Index),
}

impl Pos {
    /// A position in `0..len` (`len` > 0).
    fn at(&self, len: usize) -> usize {
        match self {
            Pos::Head(i) => i % len,
            Pos::Anywhere(i) => i.index(len),
        }
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        (0usize..64).prop_map(Pos::Head),
        any::<Index>().prop_map(Pos::Anywhere),
    ]
}

/// One way of damaging a file.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Cut the file at a position.
    Truncate(Pos),
    FlipBit(Pos, u8),
    SetByte(Pos, u8),
    Insert(Pos, Vec<u8>),
    Remove(Pos, usize),
    /// Overwrite with an extreme machine word (see [`extreme_word`]).
    Overwrite(Pos, Vec<u8>),
    /// Append bytes (trailing garbage).
    Append(Vec<u8>),
}

impl Edit {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Edit::Append(extra) => bytes.extend_from_slice(extra),
            _ if len == 0 => {}
            Edit::Truncate(p) => bytes.truncate(p.at(len)),
            Edit::FlipBit(p, bit) => bytes[p.at(len)] ^= 1 << (bit % 8),
            Edit::SetByte(p, b) => bytes[p.at(len)] = *b,
            Edit::Insert(p, extra) => {
                let at = p.at(len);
                bytes.splice(at..at, extra.iter().copied());
            }
            Edit::Remove(p, n) => {
                let at = p.at(len);
                bytes.drain(at..(at + n).min(len));
            }
            Edit::Overwrite(p, word) => {
                let at = p.at(len);
                let end = (at + word.len()).min(len);
                bytes[at..end].copy_from_slice(&word[..end - at]);
            }
        }
    }
}

/// Bytes of a 4- or 8-byte integer at an edge: 0, 1, powers of two near the type limits, the
/// maximum, in either byte order, or random.
pub fn extreme_word() -> impl Strategy<Value = Vec<u8>> {
    let u32s = prop_oneof![
        Just(0u32),
        Just(1),
        Just(255),
        Just(256),
        Just(65535),
        Just(65536),
        Just(1 << 24),
        Just(i32::MAX as u32),
        Just(1 << 31),
        Just(u32::MAX),
        any::<u32>(),
    ];
    let u64s = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(i64::MAX as u64),
        Just(1 << 63),
        Just(u64::MAX),
        any::<u64>(),
    ];
    prop_oneof![
        u32s.clone().prop_map(|v| v.to_be_bytes().to_vec()),
        u32s.prop_map(|v| v.to_le_bytes().to_vec()),
        u64s.clone().prop_map(|v| v.to_le_bytes().to_vec()),
        u64s.prop_map(|v| v.to_be_bytes().to_vec()),
    ]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    let bytes = prop::collection::vec(any::<u8>(), 1..16);
    prop_oneof![
        pos().prop_map(Edit::Truncate),
        (pos(), any::<u8>()).prop_map(|(p, b)| Edit::FlipBit(p, b)),
        (pos(), any::<u8>()).prop_map(|(p, b)| Edit::SetByte(p, b)),
        (pos(), bytes.clone()).prop_map(|(p, b)| Edit::Insert(p, b)),
        (pos(), 1usize..64).prop_map(|(p, n)| Edit::Remove(p, n)),
        (pos(), extreme_word()).prop_map(|(p, w)| Edit::Overwrite(p, w)),
        bytes.prop_map(Edit::Append),
    ]
}

/// `valid` with one to four edits applied.
pub fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(edit(), 1..=4).prop_map(move |edits| {
        let mut bytes = valid.clone();
        for e in &edits {
            e.apply(&mut bytes);
        }
        bytes
    })
}

/// Arbitrary bytes, optionally starting with `prefix` (a magic number, so the reader gets past
/// its first check).
pub fn random_bytes(prefix: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..512)).prop_map(move |(keep, rest)| {
        if keep {
            prefix.iter().copied().chain(rest).collect()
        } else {
            rest
        }
    })
}

// ---- the check -------------------------------------------------------------------------------

/// The reader's answer is either a value or an error whose one-line message starts with
/// `"{path}: "` (the crate's `path: message` style) and says something after it.
pub fn assert_error_names<T>(result: &sparsegrad::error::Result<T>, path: &Path) {
    if let Err(e) = result {
        let message = e.to_string();
        let prefix = format!("{}: ", path.display());
        assert!(
            message.starts_with(&prefix) && message.len() > prefix.len(),
            "error does not name {}: {message}",
            path.display()
        );
        assert!(!message.contains('\n'), "error is not one line: {message}");
    }
}

/// Like [`assert_error_names`] for a reader of a whole directory: the error names `dir` or a file
/// inside it.
pub fn assert_error_within<T>(result: &sparsegrad::error::Result<T>, dir: &Path) {
    if let Err(e) = result {
        let message = e.to_string();
        let named = message.split(": ").next().unwrap_or("");
        assert!(
            Path::new(named).starts_with(dir) && message.len() > named.len() + 2,
            "error names neither {} nor a file in it: {message}",
            dir.display()
        );
        assert!(!message.contains('\n'), "error is not one line: {message}");
    }
}
