//! The IDX reader and the MNIST-style directory loader: every way a file can be malformed gives an
//! error naming the file with an exact message, no header claim causes a large allocation, and
//! the bundled MNIST-10k loads as its README describes. Its counting allocator also measures the
//! fuzz properties' memory (`data_idx/fuzz_memory.rs`); `data_idx/splits.rs` checks that the
//! files of one directory agree.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sparsegrad::data::idx::read_idx;
use sparsegrad::data::{DataKind, load_dir, load_mnist_dir};

use scratch::Scratch;

// ---- allocation tracking: the current thread's largest block and peak heap use ---------------

#[path = "suite/fuzz_formats.rs"]
mod fuzz_formats;
#[path = "suite/fuzz_json.rs"]
mod fuzz_json;
#[path = "data_idx/fuzz_memory.rs"]
mod fuzz_memory;
#[path = "suite/fuzz_support.rs"]
mod fuzz_support;
#[path = "suite/scratch.rs"]
mod scratch;
#[path = "data_idx/splits.rs"]
mod splits;

struct TrackLargest;

thread_local! {
    // `const` and `Drop`-free, so using them inside the allocator never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread, and the most that has been.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(grown: usize, shrunk: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(grown)));
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + grown as isize);
        let _ = PEAK.try_with(|p| p.set(p.get().max(live.get())));
        live.set(live.get() - shrunk as isize);
    });
}

unsafe impl GlobalAlloc for TrackLargest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackLargest = TrackLargest;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, usage) = memory_use(f);
    (out, usage.largest)
}

/// What `f` allocated on this thread: its largest block, and the most heap it held at once
/// beyond what was held when it started. (A realloc counts as the new block allocated before the
/// old one is freed, as a moving realloc does.)
struct Usage {
    largest: usize,
    peak: usize,
}

fn memory_use<T>(f: impl FnOnce() -> T) -> (T, Usage) {
    LARGEST.with(|c| c.set(0));
    let base = LIVE.with(|c| c.get());
    PEAK.with(|c| c.set(base));
    let out = f();
    let usage = Usage {
        largest: LARGEST.with(|c| c.get()),
        peak: (PEAK.with(|c| c.get()) - base).max(0) as usize,
    };
    (out, usage)
}

// ---- helpers ----------------------------------------------------------------------------------

/// An unsigned-byte IDX file: magic 00 00 08 ndim, big-endian dims, then `data`.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The message of `read_idx` on a file holding `bytes`, with the path it named.
fn idx_error(dir: &Scratch, name: &str, bytes: &[u8]) -> (String, PathBuf) {
    let path = dir.write(name, bytes);
    let err = read_idx(&path).expect_err("malformed IDX file must be rejected");
    (err.to_string(), path)
}

/// Asserts that reading `bytes` fails with exactly `path: message`.
fn assert_idx_error(dir: &Scratch, name: &str, bytes: &[u8], message: &str) {
    let (got, path) = idx_error(dir, name, bytes);
    assert_eq!(got, format!("{}: {message}", path.display()));
}

/// A valid MNIST-style directory with `n_train` / `n_test` 2x2 images and labels `i % 10`.
fn write_mnist_dir(dir: &Path, n_train: u32, n_test: u32) {
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let pixels: Vec<u8> = (0..n * 4).map(|v| v as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx_bytes(&[n, 2, 2], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx_bytes(&[n], &labels),
        )
        .unwrap();
    }
}

// ---- the reader's error paths -------------------------------------------------------------------

#[test]
fn idx_truncated_header_is_an_error() {
    let dir = Scratch::new("data-idx-truncated-header");
    assert_idx_error(
        &dir,
        "empty",
        &[],
        "too short for an IDX header (needs at least 4 bytes)",
    );
    assert_idx_error(
        &dir,
        "two",
        &[0, 0],
        "too short for an IDX header (needs at least 4 bytes)",
    );
    // 3 dimensions declared, only 7 of their 12 bytes present.
    assert_idx_error(
        &dir,
        "dims",
        &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0],
        "truncated IDX header: 3 dimensions declared but not all present",
    );
}

#[test]
fn idx_bad_magic_is_an_error() {
    let dir = Scratch::new("data-idx-magic");
    let mut bytes = idx_bytes(&[2], &[1, 2]);
    bytes[0] = 0x01;
    bytes[1] = 0x02;
    assert_idx_error(
        &dir,
        "f",
        &bytes,
        "bad IDX magic number 01020801 (must start with 0000)",
    );
}

#[test]
fn idx_unsupported_element_type_is_an_error() {
    let dir = Scratch::new("data-idx-type");
    let mut bytes = idx_bytes(&[2], &[0; 8]);
    bytes[2] = 0x0d; // float
    assert_idx_error(
        &dir,
        "f",
        &bytes,
        "element type 0x0d is not supported (only unsigned bytes, 0x08)",
    );
}

#[test]
fn idx_zero_dimensions_are_an_error() {
    let dir = Scratch::new("data-idx-zero-dims");
    assert_idx_error(&dir, "ndim", &[0, 0, 8, 0], "header declares 0 dimensions");
    assert_idx_error(
        &dir,
        "size",
        &idx_bytes(&[0, 28, 28], &[]),
        "dimensions [0, 28, 28] include a zero size",
    );
}

#[test]
fn idx_data_shorter_than_declared_is_an_error() {
    let dir = Scratch::new("data-idx-short");
    let short = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5]);
    assert_idx_error(
        &dir,
        "raw",
        &short,
        "dimensions [2, 3] need 6 data bytes but the file has 5",
    );
    assert_idx_error(
        &dir,
        "gz",
        &gzip(&short),
        "truncated: dimensions [2, 3] need 6 data bytes, found 5",
    );
}

#[test]
fn idx_trailing_bytes_are_an_error() {
    let dir = Scratch::new("data-idx-trailing");
    let long = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6, 7]);
    assert_idx_error(
        &dir,
        "raw",
        &long,
        "dimensions [2, 3] need 6 data bytes but the file has 7",
    );
    assert_idx_error(
        &dir,
        "gz",
        &gzip(&long),
        "trailing bytes after the 6 data bytes of dimensions [2, 3]",
    );
}

#[test]
fn idx_huge_header_claim_errors_without_allocating_it() {
    let dir = Scratch::new("data-idx-huge");
    // 60000^3 bytes (216 TB) claimed by a 20-byte file: over the reader's limit.
    let huge = idx_bytes(&[60000, 60000, 60000], &[1, 2, 3, 4]);
    assert_eq!(huge.len(), 20);
    let path = dir.write("huge", &huge);
    let (result, largest) = largest_allocation(|| read_idx(&path));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: dimensions [60000, 60000, 60000] describe more than 4294967296 bytes",
            path.display()
        )
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");

    // 1 GB claimed (under the limit), 4 bytes present: raw files are checked against their length.
    let big = idx_bytes(&[1000, 1000, 1000], &[1, 2, 3, 4]);
    let path = dir.write("big", &big);
    let (result, largest) = largest_allocation(|| read_idx(&path));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: dimensions [1000, 1000, 1000] need 1000000000 data bytes but the file has 4",
            path.display()
        )
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");

    // The same claim gzip-compressed: more than deflate can expand the file to, so it is refused
    // before decoding.
    let gz = gzip(&big);
    let path = dir.write("big.gz", &gz);
    let (result, largest) = largest_allocation(|| read_idx(&path));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: dimensions [1000, 1000, 1000] need 1000000000 data bytes, more than a {}-byte \
             gzip file can hold (at most {} bytes decompressed)",
            path.display(),
            gz.len(),
            1032 * gz.len()
        )
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");

    // A claim deflate could reach, but the stream ends early: the buffer grows with the data
    // instead of being reserved from the header.
    let claim = 20_000;
    let short = idx_bytes(&[claim], &[1, 2, 3, 4]);
    let path = dir.write("short.gz", &gzip(&short));
    let (result, largest) = largest_allocation(|| read_idx(&path));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "{}: truncated: dimensions [{claim}] need {claim} data bytes, found 4",
            path.display()
        )
    );
    assert!(largest <= 2 << 20, "largest allocation {largest} bytes");
}

#[test]
fn idx_invalid_gzip_is_an_error() {
    let dir = Scratch::new("data-idx-bad-gzip");
    // gzip magic, then a header with an unknown compression method.
    assert_idx_error(
        &dir,
        "header",
        &[0x1f, 0x8b, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9],
        "not a valid gzip stream (invalid gzip header)",
    );
    let mut corrupt = gzip(&idx_bytes(&[1000], &[7; 1000]));
    let n = corrupt.len();
    corrupt[n - 6] ^= 1; // CRC-32 of the trailer
    assert_idx_error(
        &dir,
        "crc",
        &corrupt,
        "not a valid gzip stream (corrupt gzip stream does not have a matching checksum)",
    );
}

#[test]
fn idx_truncated_gzip_is_an_error() {
    let dir = Scratch::new("data-idx-gzip-truncated");
    let gz = gzip(&idx_bytes(&[1000], &[7; 1000]));
    // Without its 8-byte trailer: all data decodes, the stream's end is missing.
    assert_idx_error(
        &dir,
        "trailer",
        &gz[..gz.len() - 8],
        "gzip stream is truncated (unexpected end of file)",
    );
    // Cut inside the deflate data.
    assert_idx_error(
        &dir,
        "deflate",
        &gz[..12],
        "gzip stream is truncated (incomplete deflate stream)",
    );
}

#[test]
fn idx_missing_file_is_an_error() {
    let dir = Scratch::new("data-idx-missing-file");
    let path = dir.path().join("absent");
    let os = std::fs::File::open(&path).unwrap_err().to_string();
    let os = os[..1].to_lowercase() + &os[1..];
    assert_eq!(
        read_idx(&path).unwrap_err().to_string(),
        format!("{}: {os}", path.display())
    );
    assert!(os.starts_with("no such file"), "{os}");
}

// ---- the directory loader's error paths -------------------------------------------------------

#[test]
fn mnist_dir_mismatched_image_and_label_counts_is_an_error() {
    let dir = Scratch::new("data-idx-counts");
    write_mnist_dir(dir.path(), 4, 2);
    let labels = dir.write(
        "train-labels-idx1-ubyte",
        &idx_bytes(&[5], &[0, 1, 2, 3, 4]),
    );
    assert_eq!(
        load_mnist_dir(dir.path()).unwrap_err().to_string(),
        format!(
            "{}: 5 labels for 4 images in {}",
            labels.display(),
            dir.path().join("train-images-idx3-ubyte").display()
        )
    );
}

#[test]
fn mnist_dir_label_out_of_range_is_an_error() {
    let dir = Scratch::new("data-idx-label-range");
    write_mnist_dir(dir.path(), 4, 2);
    let labels = dir.write("t10k-labels-idx1-ubyte", &idx_bytes(&[2], &[9, 10]));
    assert_eq!(
        load_mnist_dir(dir.path()).unwrap_err().to_string(),
        format!(
            "{}: label 10 of record 1 is out of range for 10 classes",
            labels.display()
        )
    );
}

#[test]
fn mnist_dir_wrong_ranks_are_an_error() {
    let dir = Scratch::new("data-idx-ranks");
    write_mnist_dir(dir.path(), 4, 2);
    let images = dir.write("train-images-idx3-ubyte", &idx_bytes(&[4, 4], &[0; 16]));
    assert_eq!(
        load_mnist_dir(dir.path()).unwrap_err().to_string(),
        format!(
            "{}: expected images [N, H, W], got dimensions [4, 4]",
            images.display()
        )
    );
    write_mnist_dir(dir.path(), 4, 2);
    let labels = dir.write("train-labels-idx1-ubyte", &idx_bytes(&[4, 1], &[0; 4]));
    assert_eq!(
        load_mnist_dir(dir.path()).unwrap_err().to_string(),
        format!(
            "{}: expected labels [N], got dimensions [4, 1]",
            labels.display()
        )
    );
}

#[test]
fn mnist_dir_missing_file_is_an_error() {
    let dir = Scratch::new("data-idx-missing-in-dir");
    write_mnist_dir(dir.path(), 4, 2);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    assert_eq!(
        load_mnist_dir(dir.path()).unwrap_err().to_string(),
        format!(
            "{}: no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz in this directory",
            dir.path().display()
        )
    );
    let absent = dir.path().join("absent");
    assert_eq!(
        load_mnist_dir(&absent).unwrap_err().to_string(),
        format!("{}: data directory does not exist", absent.display())
    );
}

// ---- the bundled data ---------------------------------------------------------------------------

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-10k")
}

fn class_counts(labels: &[u8]) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts
}

#[test]
fn bundled_mnist_10k_matches_its_readme() {
    let data = load_mnist_dir(&bundled()).unwrap();
    assert_eq!(data.kind, DataKind::Idx);
    assert_eq!(data.train.images.shape(), &[8000, 1, 28, 28]);
    assert_eq!(data.test.images.shape(), &[2000, 1, 28, 28]);
    assert_eq!((data.train.classes, data.test.classes), (10, 10));
    // Class counts from data/mnist-10k/README.md.
    assert_eq!(
        class_counts(&data.train.labels),
        [809, 899, 796, 823, 786, 677, 828, 828, 772, 782]
    );
    assert_eq!(
        class_counts(&data.test.labels),
        [192, 228, 195, 209, 194, 186, 186, 242, 172, 196]
    );
    // Real digits: mostly background, some ink.
    let ink = data.train.images.iter().filter(|&&p| p > 128).count() as f64
        / data.train.images.len() as f64;
    assert!((0.05..0.3).contains(&ink), "fraction of ink pixels {ink}");

    // The bare name resolves to the same files.
    let named = load_dir(Path::new("mnist-10k")).unwrap();
    assert_eq!(named.kind, DataKind::Idx);
    assert_eq!(named.train.labels, data.train.labels);
    assert_eq!(named.test.images, data.test.images);
}

#[test]
fn raw_idx_files_load_identically_to_gzip() {
    let dir = Scratch::new("data-idx-raw");
    for entry in std::fs::read_dir(bundled()).unwrap() {
        let path = entry.unwrap().path();
        if let Some(name) = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".gz")
        {
            dir.write(name, &gunzip(&std::fs::read(&path).unwrap()));
        }
    }
    let raw = load_mnist_dir(dir.path()).unwrap();
    let gz = load_mnist_dir(&bundled()).unwrap();
    assert_eq!(raw.train.images, gz.train.images);
    assert_eq!(raw.train.labels, gz.train.labels);
    assert_eq!(raw.test.images, gz.test.images);
    assert_eq!(raw.test.labels, gz.test.labels);
}
