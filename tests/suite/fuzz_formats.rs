//! Valid files of every format the crate reads (written by hand, or by a real training and
//! post-training run), headers with extreme fields, and the fuzz input of each reader: random
//! bytes, damaged valid files and extreme headers.
#![allow(dead_code)] // each binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use sparsegrad::methods::{SharedOptions, TrainMethod};
use sparsegrad::posttrain::PosttrainConfig;
use sparsegrad::train::{Progress, RunOptions, SparsityConfig, TrainConfig, train};

use crate::fuzz_json::{edit_json, json_edit};
use crate::fuzz_support::{damaged, random_bytes};

// ---- IDX and CIFAR -----------------------------------------------------------------------------

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

/// Real runs whose files the readers are fuzzed with, as `sparsegrad` really writes them.
pub struct SeedRuns {
    /// A finished one-epoch STR run (LeNet-300 on 32 4x4 images): `model.safetensors`,
    /// `checkpoint.safetensors`, `summary.json`, `metrics.jsonl`.
    pub train: PathBuf,
    /// A two-iteration FCPTS post-training run of its export.
    pub post: PathBuf,
    /// The same training for two epochs, stopped after the first (resumable), and its config.
    pub resumable: PathBuf,
    pub resumable_config: TrainConfig,
}

/// The training config of the seed runs: LeNet-300 with STR for `epochs` epochs on the 32 4x4
/// images of `data`, into `out`.
pub fn seed_config(data: &Path, epochs: usize, out: PathBuf) -> TrainConfig {
    TrainConfig {
        data: data.to_str().unwrap().into(),
        method: TrainMethod::Str,
        epochs,
        batch_size: 16,
        val_split: 0.25,
        out: Some(out),
        sparsity: SparsityConfig {
            shared: SharedOptions {
                target_sparsity: Some(0.5),
                ..SharedOptions::default()
            },
            ..SparsityConfig::default()
        },
        ..TrainConfig::default()
    }
}

/// Makes the [`SeedRuns`] in `dir`.
pub fn seed_runs(dir: &Path) -> SeedRuns {
    let data = dir.join("data");
    write_idx_dir(&data, 32, 8, 4, 4);
    let config = seed_config(&data, 1, dir.join("run"));
    let (run, post_out) = (dir.join("run"), dir.join("post"));
    train(&config, RunOptions::default(), &mut Progress::plain()).unwrap();
    let post = PosttrainConfig {
        checkpoint: Some(run.join("model.safetensors")),
        target_sparsity: Some(0.5),
        calib: 8,
        iters: 2,
        warmup: 1,
        batch_size: 8,
        out: Some(post_out.clone()),
        ..PosttrainConfig::default()
    };
    sparsegrad::posttrain::run(&post, false, &mut Progress::plain()).unwrap();
    let resumable_config = seed_config(&data, 2, dir.join("resumable"));
    let stop = RunOptions {
        stop_after: Some(1),
        ..RunOptions::default()
    };
    train(&resumable_config, stop, &mut Progress::plain()).unwrap();
    SeedRuns {
        train: run,
        post: post_out,
        resumable: resumable_config.out_dir(),
        resumable_config,
    }
}

/// The [`SeedRuns`] of this test process, made once under Cargo's scratch directory for tests
/// (training takes about a second) and replaced by the next process.
pub fn seed_runs_cached() -> &'static SeedRuns {
    static RUNS: std::sync::OnceLock<SeedRuns> = std::sync::OnceLock::new();
    RUNS.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // The binary's name without Cargo's hash, so each build reuses one directory.
        let stem = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let name = stem.rsplit_once('-').map_or(stem.as_str(), |(n, _)| n);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-seed-runs-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        seed_runs(&dir)
    })
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
    let run = &seed_runs_cached().train;
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

// ---- the sparse export -------------------------------------------------------------------------

/// A valid sparse export of the seed run's (partly sparse) model, written once.
pub fn sparse_export_seed() -> Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            let run = &seed_runs_cached().train;
            let (model, _) = sparsegrad::run::load_model(&run.join("model.safetensors")).unwrap();
            let path = run.join("model.sparse.safetensors");
            sparsegrad::io::sparse_export::write_sparse_export(
                &path,
                model.as_ref(),
                &Default::default(),
            )
            .unwrap();
            std::fs::read(&path).unwrap()
        })
        .clone()
}

/// Random bytes, extreme safetensors headers and damaged copies of a real sparse export.
pub fn sparse_export_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => random_bytes(&[]),
        2 => safetensors_extreme_header(),
        4 => damaged(sparse_export_seed()),
    ]
}
