//! What the fuzz properties share: the case budget, the ways a valid file is damaged, extreme
//! header values, valid files of every format, and the check every reader must pass.
//!
//! Used by `fuzz_parsers` (no panic, an error naming the file) and, through a `#[path]` module,
//! by the counting-allocator binary `tests/data_idx.rs` (memory bounded by the file's size).
#![allow(dead_code)] // each binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};

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

// ---- files -------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct FuzzDir(pub PathBuf);

impl FuzzDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sparsegrad-fuzz-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        FuzzDir(dir)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for FuzzDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An unsigned-byte IDX file: magic 00 00 08 ndim, big-endian dims, then `data`.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A valid images file of `n` images `h` x `w` and its labels file (labels `i % 10`).
pub fn idx_pair(n: u32, h: u32, w: u32) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..n * h * w).map(|v| (v * 37) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (idx_bytes(&[n, h, w], &pixels), idx_bytes(&[n], &labels))
}

/// IDX files with extreme headers: 0 to 5 dimensions of extreme sizes, then up to 64 data bytes.
pub fn idx_extreme_header() -> impl Strategy<Value = Vec<u8>> {
    let dim = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(28),
        Just(65536),
        Just(1 << 31),
        Just(u32::MAX),
        any::<u32>(),
    ];
    (
        prop::collection::vec(dim, 0..=5),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(dims, data)| idx_bytes(&dims, &data))
}

/// CIFAR records: `n` records of `label_bytes` labels (each `< classes`) and 3072 pixels.
pub fn cifar_records(n: usize, label_bytes: usize, classes: u8) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            (0..label_bytes)
                .map(move |k| ((i + k) % classes as usize) as u8)
                .chain((0..3072).map(move |p| (p * 7 + i) as u8))
        })
        .collect()
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

// ---- real run files ----------------------------------------------------------------------------

/// An MNIST-style directory: `n_train` / `n_test` images of `h` x `w` pixels.
pub fn write_idx_dir(dir: &Path, n_train: u32, n_test: u32, h: u32, w: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let (images, labels) = idx_pair(n, h, w);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// A finished one-epoch training run of `method` (LeNet-300 on 32 4x4 images) in `dir/run`, and
/// a two-iteration FCPTS post-training run of its export in `dir/post`: every file `sparsegrad`
/// reads back, as it really writes them. Returns (train run, post-training run).
pub fn seed_runs(dir: &Path, method: &str) -> (PathBuf, PathBuf) {
    use sparsegrad::posttrain::PosttrainConfig;
    use sparsegrad::train::{Progress, RunOptions, SparsityConfig, TrainConfig, train};
    let data = dir.join("data");
    write_idx_dir(&data, 32, 8, 4, 4);
    let config = TrainConfig {
        data: data.to_str().unwrap().into(),
        method: method.into(),
        epochs: 1,
        batch_size: 16,
        val_split: 0.25,
        out: dir.join("run"),
        sparsity: SparsityConfig {
            target_sparsity: (method != "dense").then_some(0.5),
            ..SparsityConfig::default()
        },
        ..TrainConfig::default()
    };
    train(&config, RunOptions::default(), &mut Progress::plain()).unwrap();
    let post = PosttrainConfig {
        checkpoint: config.out.join("model.safetensors"),
        calib: 8,
        iters: 2,
        warmup: 1,
        batch_size: 8,
        out: dir.join("post"),
        ..PosttrainConfig::default()
    };
    sparsegrad::posttrain::run(&post, false, &mut Progress::plain()).unwrap();
    (config.out, post.out)
}

/// The seed runs ([`seed_runs`], STR) of this test process, made once under Cargo's scratch
/// directory for tests (training takes about a second) and replaced by the next process.
pub fn seed_runs_cached() -> (&'static Path, &'static Path) {
    static RUNS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    let (train, post) = RUNS.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-seed-runs-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        seed_runs(&dir, "str")
    });
    (train, post)
}

// ---- JSON --------------------------------------------------------------------------------------

/// JSON text at an edge: numbers beyond every integer and float type, negative counts, wrong
/// types, empty and huge containers, nesting past the parser's depth limit, invalid escapes.
pub fn extreme_json() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("-0.0".to_string()),
        Just("0.5".to_string()),
        Just("1e308".to_string()),
        Just("-1e308".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("4294967296".to_string()),
        Just("\"\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"x\\u0000y\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[0,0,0,0,0,0,0,0]".to_string()),
        Just(format!("\"{}\"", "a".repeat(10_000))),
        Just(format!("{}0{}", "[".repeat(200), "]".repeat(200))),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
    ]
}

/// Every JSON pointer of `value` (the root included), in document order.
pub fn json_pointers(value: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    let key = k.replace('~', "~0").replace('/', "~1");
                    walk(child, format!("{at}/{key}"), out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

/// One change to a JSON document: a value replaced by raw JSON text (which may be invalid), or
/// removed.
#[derive(Clone, Debug)]
pub enum JsonEdit {
    Replace(Index, String),
    Remove(Index),
}

pub fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<Index>(), extreme_json()).prop_map(|(i, t)| JsonEdit::Replace(i, t)),
        1 => any::<Index>().prop_map(JsonEdit::Remove),
    ]
}

/// `text` (a JSON document) with `edits` applied, as text.
pub fn edit_json(text: &str, edits: &[JsonEdit]) -> String {
    const MARK: &str = "\u{1}sparsegrad-fuzz-mark\u{1}";
    let mut value: serde_json::Value = serde_json::from_str(text).expect("a valid seed");
    let mut raw = Vec::new();
    for e in edits {
        let pointers = json_pointers(&value);
        match e {
            JsonEdit::Replace(i, t) => {
                let at = &pointers[i.index(pointers.len())];
                *value.pointer_mut(at).unwrap() = format!("{MARK}{}", raw.len()).into();
                raw.push(t.clone());
            }
            JsonEdit::Remove(i) if pointers.len() > 1 => {
                let at = &pointers[1 + i.index(pointers.len() - 1)];
                let (parent, key) = at.rsplit_once('/').unwrap();
                let key = key.replace("~1", "/").replace("~0", "~");
                match value.pointer_mut(parent).unwrap() {
                    serde_json::Value::Object(map) => {
                        map.remove(&key);
                    }
                    serde_json::Value::Array(items) => {
                        items.remove(key.parse::<usize>().unwrap());
                    }
                    _ => unreachable!("a pointer's parent is a container"),
                }
            }
            JsonEdit::Remove(_) => {}
        }
    }
    let mut out = serde_json::to_string(&value).unwrap();
    for (k, t) in raw.iter().enumerate().rev() {
        out = out.replace(&serde_json::to_string(&format!("{MARK}{k}")).unwrap(), t);
    }
    out
}

// ---- safetensors -------------------------------------------------------------------------------

/// safetensors files with extreme headers: up to three tensors of any dtype (and an unknown
/// one) with extreme dimensions, offsets consistent with them or not, the length field right,
/// off by one or extreme, then a few data bytes.
pub fn safetensors_extreme_header() -> impl Strategy<Value = Vec<u8>> {
    let dim = prop_oneof![
        0u64..4,
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(1 << 62),
        Just(i64::MAX as u64),
        Just(u64::MAX),
    ];
    let dtype = prop::sample::select(vec![
        "BOOL", "F4", "F6_E2M3", "U8", "I8", "F8_E5M2", "I16", "F16", "BF16", "I32", "U32", "F32",
        "C64", "F64", "I64", "U64", "X",
    ]);
    let offset = prop_oneof![0u64..64, Just(u64::MAX), Just(1 << 63), any::<u64>()];
    let tensor = (
        dtype,
        prop::collection::vec(dim, 0..5),
        offset.clone(),
        offset,
    );
    let length = prop_oneof![
        3 => Just(None),
        1 => (-1i64..=1).prop_map(Some),
        1 => prop_oneof![Just(i64::MIN), Just(-8), Just(i64::MAX), Just(100_000_001)].prop_map(Some),
    ];
    (
        prop::collection::vec(tensor, 0..4),
        any::<bool>(),
        any::<bool>(),
        length,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(tensors, consistent, metadata, length, data)| {
            let mut header = serde_json::Map::new();
            if metadata {
                header.insert(
                    "__metadata__".into(),
                    serde_json::json!({"format": "pt", "sparsegrad": "{}"}),
                );
            }
            let mut start = 0u64;
            for (i, (dtype, shape, a, b)) in tensors.into_iter().enumerate() {
                let (a, b) = if consistent {
                    let bytes = shape
                        .iter()
                        .try_fold(4u64, |acc, &d| acc.checked_mul(d))
                        .unwrap_or(u64::MAX);
                    (start, start.saturating_add(bytes))
                } else {
                    (a, b)
                };
                start = b;
                header.insert(
                    format!("t{i}"),
                    serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [a, b]}),
                );
            }
            let text = serde_json::to_string(&header).unwrap();
            let n = match length {
                None => text.len() as u64,
                Some(d @ -1..=1) => (text.len() as i64 + d) as u64,
                Some(v) => v as u64,
            };
            let mut out = n.to_le_bytes().to_vec();
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&data);
            out
        })
}

/// The sparsegrad metadata of a checkpoint file (the JSON under `__metadata__.sparsegrad`),
/// replaced by `metadata`: the tensors stay as they were.
pub fn with_metadata(checkpoint: &[u8], metadata: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(checkpoint[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&checkpoint[8..8 + n]).unwrap();
    header["__metadata__"]["sparsegrad"] = metadata.into();
    let text = serde_json::to_string(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&checkpoint[8 + n..]);
    out
}

/// The sparsegrad metadata of a checkpoint file written by `sparsegrad`.
pub fn metadata_of(checkpoint: &[u8]) -> String {
    let n = u64::from_le_bytes(checkpoint[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&checkpoint[8..8 + n]).unwrap();
    header["__metadata__"]["sparsegrad"]
        .as_str()
        .expect("sparsegrad metadata")
        .to_string()
}

// ---- the inputs of each reader ------------------------------------------------------------------

/// A valid IDX images file or labels file.
pub fn valid_idx() -> impl Strategy<Value = Vec<u8>> {
    let (images, labels) = idx_pair(3, 4, 5);
    prop::sample::select(vec![images, labels])
}

/// Raw IDX files: random bytes (some after the magic), damaged valid files, extreme headers.
pub fn idx_raw_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        random_bytes(&[0, 0, 8]),
        valid_idx().prop_flat_map(damaged),
        idx_extreme_header(),
    ]
}

/// gzip IDX files: random bytes after the gzip magic, damaged compressed valid files,
/// compressed damaged files, compressed extreme headers, and small bombs (a header claiming
/// far more than the stream of zeros that follows, or the reverse).
pub fn idx_gzip_input() -> impl Strategy<Value = Vec<u8>> {
    let bomb = (any::<u32>(), 0usize..1 << 20).prop_map(|(claim, zeros)| {
        let mut bytes = idx_bytes(&[claim], &[]);
        bytes.resize(bytes.len() + zeros, 0);
        gzip(&bytes)
    });
    prop_oneof![
        random_bytes(&[0x1f, 0x8b, 8]),
        valid_idx().prop_flat_map(|v| damaged(gzip(&v))),
        valid_idx().prop_flat_map(damaged).prop_map(|v| gzip(&v)),
        idx_extreme_header().prop_map(|v| gzip(&v)),
        bomb,
    ]
}

/// CIFAR-10 files: random bytes, damaged records, whole records plus one byte.
pub fn cifar10_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        random_bytes(&[]),
        damaged(cifar_records(2, 1, 10)),
        (0usize..3, any::<u8>()).prop_map(|(n, extra)| {
            let mut b = cifar_records(n, 1, 10);
            b.push(extra);
            b
        }),
    ]
}

/// CIFAR-100 files: random bytes, damaged records.
pub fn cifar100_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![random_bytes(&[]), damaged(cifar_records(2, 2, 20))]
}

/// safetensors files: random bytes, extreme headers, damaged copies of a real export and a real
/// STR training checkpoint (transform parameters, optimiser state), and those two with their JSON
/// metadata edited (sizes, classes, widths, seeds, method settings, loop state).
pub fn checkpoint_input() -> impl Strategy<Value = Vec<u8>> {
    let (run, _) = seed_runs_cached();
    let export = std::fs::read(run.join("model.safetensors")).unwrap();
    let checkpoint = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let seeds = prop::sample::select(vec![export, checkpoint]);
    let edited = (seeds.clone(), prop::collection::vec(json_edit(), 1..=3))
        .prop_map(|(valid, edits)| with_metadata(&valid, &edit_json(&metadata_of(&valid), &edits)));
    prop_oneof![
        1 => random_bytes(&[]),
        2 => safetensors_extreme_header(),
        3 => seeds.prop_flat_map(damaged),
        4 => edited,
    ]
}

/// A JSON file written by a real run (`summary.json`, or `metrics.jsonl` with one JSON document
/// per line), damaged as bytes or with one document edited as JSON.
pub fn json_input(valid: String) -> impl Strategy<Value = Vec<u8>> {
    let bytes = damaged(valid.clone().into_bytes());
    let lines: Vec<String> = if valid.trim_start().starts_with('{')
        && valid.lines().count() > 1
        && valid.lines().all(|l| l.starts_with('{'))
    {
        valid.lines().map(String::from).collect()
    } else {
        vec![valid]
    };
    let edited =
        (any::<Index>(), prop::collection::vec(json_edit(), 1..=3)).prop_map(move |(i, edits)| {
            let mut docs = lines.clone();
            let k = i.index(docs.len());
            docs[k] = edit_json(&docs[k], &edits);
            let mut text = docs.join("\n");
            text.push('\n');
            text.into_bytes()
        });
    prop_oneof![bytes, edited]
}
