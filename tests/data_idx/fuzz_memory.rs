//! The fuzz inputs of `tests/suite/fuzz_parsers.rs` again, here measuring memory: whatever a
//! header claims, a reader's peak heap use stays within a constant multiple of the file's size
//! (plus its fixed buffers). A header that claims more than the file holds must be refused before
//! anything is allocated from it.

use std::path::Path;

use proptest::prelude::*;
use sparsegrad::data::idx::{MAX_DEFLATE_RATIO, read_idx};
use sparsegrad::data::{Cifar100Labels, read_cifar10_file, read_cifar100_file};
use sparsegrad::io::checkpoint::{Checkpoint, load};
use sparsegrad::io::sparse_export::read_sparse_export;
use sparsegrad::run::dir::read_summary;
use sparsegrad::run::log::JsonLines;
use sparsegrad::run::{EpochMetrics, Summary, load_model};

use crate::fuzz_formats::*;
use crate::fuzz_support::*;
use crate::memory_use;
use crate::scratch::Scratch;

/// Fewer cases than `fuzz_parsers` (whose properties check the messages): these only measure.
const CI_CASES: u32 = 48;

/// Fixed buffers a reader may hold whatever the file: I/O buffers (8 KiB, CIFAR's 64 KiB), the
/// inflate window and state (about 45 KiB), small headers.
const SLACK: usize = 256 << 10;

/// Asserts that `f` (reading the file `path`) peaks at no more than `per_byte` times the file's
/// length plus [`SLACK`] bytes of heap.
fn assert_bounded<T>(path: &Path, per_byte: usize, f: impl FnOnce() -> T) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let (out, usage) = memory_use(f);
    let bound = per_byte * len + SLACK;
    assert!(
        usage.peak <= bound,
        "reading the {len}-byte {} peaked at {} bytes of heap (largest block {}), over the bound {bound}",
        path.display(),
        usage.peak,
        usage.largest
    );
    drop(out);
}

proptest! {
    #![proptest_config(fuzz_config(CI_CASES))]

    /// A raw file's data is read into one buffer of exactly its length.
    #[test]
    fn fuzz_memory_idx_raw(bytes in idx_raw_input()) {
        let dir = Scratch::new("fuzz-mem-idx-raw");
        let path = dir.write("f", &bytes);
        assert_bounded(&path, 1, || read_idx(&path).map(|_| ()));
    }

    /// A gzip file decodes to at most MAX_DEFLATE_RATIO times its length (the buffer may double
    /// once while growing).
    #[test]
    fn fuzz_memory_idx_gzip(bytes in idx_gzip_input()) {
        let dir = Scratch::new("fuzz-mem-idx-gzip");
        let path = dir.write("f.gz", &bytes);
        assert_bounded(&path, 2 * MAX_DEFLATE_RATIO as usize, || read_idx(&path).map(|_| ()));
    }

    #[test]
    fn fuzz_memory_cifar(bytes in prop_oneof![cifar10_input(), cifar100_input()], ten in any::<bool>()) {
        let dir = Scratch::new("fuzz-mem-cifar");
        let path = dir.write("f.bin", &bytes);
        if ten {
            assert_bounded(&path, 1, || read_cifar10_file(&path).map(|_| ()));
        } else {
            assert_bounded(&path, 1, || read_cifar100_file(&path, Cifar100Labels::Fine).map(|_| ()));
        }
    }

    /// The file itself, its tensors decoded (f32 stored, f64 wanted: twice their bytes), the
    /// parsed header (a shape's `0,` is 2 bytes of text and 8 of memory, and vectors double as
    /// they grow) and the model they are loaded into.
    #[test]
    fn fuzz_memory_checkpoint(bytes in checkpoint_input()) {
        let dir = Scratch::new("fuzz-mem-checkpoint");
        let path = dir.write("model.safetensors", &bytes);
        assert_bounded(&path, 8, || load::<f64>(&path).map(|_: Checkpoint<f64>| ()));
        assert_bounded(&path, 8, || load_model(&path).map(|_| ()));
    }

    /// A parsed JSON value takes more room than its text (`[0,0,...]`: 2 bytes of text, a
    /// 32-byte value each, doubled while the vector grows).
    #[test]
    fn fuzz_memory_run_files(
        summary in json_input(seed_file("summary.json")),
        metrics in json_input(seed_file("metrics.jsonl")),
    ) {
        let dir = Scratch::new("fuzz-mem-json");
        let path = dir.write("summary.json", &summary);
        assert_bounded(&path, 64, || read_summary::<Summary>(dir.path()).map(|_| ()));
        let path = dir.write("metrics.jsonl", &metrics);
        assert_bounded(&path, 64, || JsonLines::<EpochMetrics>::read(&path).map(|_| ()));
    }

    /// The sparse export: the file, its parsed header, and its CSR parts decoded to f64 values
    /// and word-sized indices (a U16 column index becomes 4 to 8 bytes).
    #[test]
    fn fuzz_memory_sparse_export(bytes in sparse_export_input()) {
        let dir = Scratch::new("fuzz-mem-sparse-export");
        let path = dir.write("model.sparse.safetensors", &bytes);
        assert_bounded(&path, 16, || read_sparse_export::<f64>(&path).map(|_| ()));
    }
}

fn seed_file(name: &str) -> String {
    std::fs::read_to_string(seed_runs_cached().train.join(name)).unwrap()
}

/// Found by `fuzz_memory_checkpoint`: an export whose metadata said its LeNet-300 took 1x65536x65536
/// images made `load_model` allocate the 82 TB model it described (the process aborted).
#[test]
fn checkpoint_metadata_describing_a_huge_model_is_refused_before_allocating() {
    let dir = Scratch::new("fuzz-huge-model-metadata");
    let export = std::fs::read(seed_runs_cached().train.join("model.safetensors")).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&metadata_of(&export)).unwrap();
    meta["info"]["input"] = serde_json::json!([1, 65536, 65536]);
    let path = dir.write(
        "model.safetensors",
        &with_metadata(&export, &meta.to_string()),
    );
    let (result, usage) = memory_use(|| load_model(&path).map(|_| ()));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: its metadata describes --model lenet300 for 1x65536x65536 images and 10 \
             classes at width 1.0 would hold 1288490220210 values, over the limit of 268435456",
            path.display()
        )
    );
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(usage.peak <= 8 * len + SLACK, "peak {} bytes", usage.peak);
}
