//! CIFAR-10 and CIFAR-100 in their binary ("for C programs") format.
//!
//! Each file is a sequence of fixed-size records: the label byte(s), then 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue, each plane row-major 32x32). That is already the `[3, 32, 32]`
//! channel-major layout of a [`Dataset`] image, so records are copied as they are.
//!
//! - CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` (training, 10 000 records each) and
//!   `test_batch.bin`; record = label (0..10) + pixels.
//! - CIFAR-100: `train.bin` and `test.bin`; record = coarse label (0..20), fine label (0..100),
//!   pixels. The fine labels are used unless [`Cifar100Labels::Coarse`] is asked for; both are
//!   validated either way.
//!
//! The files may also sit in the subdirectory the official archives unpack to
//! (`cifar-10-batches-bin/`, `cifar-100-binary/`). Every file's length is checked to be a positive
//! whole number of records before anything is read, and buffers are sized from those lengths, so a
//! malformed file is an error naming it and is never the cause of an oversized allocation.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::Array4;

use crate::data::dataset::{DataKind, Dataset, TrainTest, check_labels};
use crate::error::{Error, Result};

/// Bytes of one CIFAR image (3 channels x 32 x 32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// CIFAR-10 training batch files, in the order their records are concatenated.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// Subdirectory the official CIFAR-10 archive (`cifar-10-binary.tar.gz`) unpacks to.
pub const CIFAR10_SUBDIR: &str = "cifar-10-batches-bin";

pub const CIFAR100_TRAIN_FILE: &str = "train.bin";
pub const CIFAR100_TEST_FILE: &str = "test.bin";
/// Subdirectory the official CIFAR-100 archive (`cifar-100-binary.tar.gz`) unpacks to.
pub const CIFAR100_SUBDIR: &str = "cifar-100-binary";

/// Which CIFAR-100 label to use as the class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cifar100Labels {
    /// The 100 classes.
    #[default]
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// One label byte of a record: its offset in the record, the number of classes, and its name in
/// error messages.
#[derive(Clone, Copy)]
struct LabelField {
    offset: usize,
    classes: usize,
    name: &'static str,
}

/// The record layout of one CIFAR variant.
struct Layout {
    fields: &'static [LabelField],
    /// Index into `fields` of the label that becomes the class.
    used: usize,
}

impl Layout {
    fn record_bytes(&self) -> usize {
        self.fields.len() + CIFAR_IMAGE_BYTES
    }

    fn classes(&self) -> usize {
        self.fields[self.used].classes
    }
}

const CIFAR10_FIELDS: &[LabelField] = &[LabelField {
    offset: 0,
    classes: 10,
    name: "label",
}];
const CIFAR100_FIELDS: &[LabelField] = &[
    LabelField {
        offset: 0,
        classes: 20,
        name: "coarse label",
    },
    LabelField {
        offset: 1,
        classes: 100,
        name: "fine label",
    },
];

fn cifar10_layout() -> Layout {
    Layout {
        fields: CIFAR10_FIELDS,
        used: 0,
    }
}

fn cifar100_layout(labels: Cifar100Labels) -> Layout {
    let used = match labels {
        Cifar100Labels::Coarse => 0,
        Cifar100Labels::Fine => 1,
    };
    Layout {
        fields: CIFAR100_FIELDS,
        used,
    }
}

/// Number of records in `path`, from its length: the file must exist and hold a positive whole
/// number of records.
fn count_records(path: &Path, layout: &Layout) -> Result<usize> {
    if !path.is_file() {
        return Err(Error::format(path, "file not found"));
    }
    let len = path.metadata().map_err(|e| Error::io(path, e))?.len();
    let record = layout.record_bytes() as u64;
    if len == 0 {
        return Err(Error::format(path, "file is empty"));
    }
    if len < record {
        return Err(Error::format(
            path,
            format!("length {len} is shorter than one {record}-byte record"),
        ));
    }
    if len % record != 0 {
        return Err(Error::format(
            path,
            format!(
                "length {len} is not a whole number of {record}-byte records ({} bytes over)",
                len % record
            ),
        ));
    }
    usize::try_from(len / record).map_err(|_| {
        Error::format(
            path,
            format!("{} records do not fit in memory", len / record),
        )
    })
}

/// Reads the `records` records of `path` (as counted by [`count_records`]), validates every label
/// field and appends the pixels and the used label.
fn append_records(
    path: &Path,
    records: usize,
    layout: &Layout,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<()> {
    let mut reader =
        BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| Error::io(path, e))?);
    let mut record = vec![0u8; layout.record_bytes()];
    let mut fields: Vec<Vec<u8>> = layout
        .fields
        .iter()
        .map(|_| Vec::with_capacity(records))
        .collect();
    for i in 0..records {
        reader.read_exact(&mut record).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::format(
                path,
                format!("file ended inside record {i} (was it changed while being read?)"),
            ),
            _ => Error::io(path, e),
        })?;
        for (column, field) in fields.iter_mut().zip(layout.fields) {
            column.push(record[field.offset]);
        }
        pixels.extend_from_slice(&record[layout.fields.len()..]);
    }
    for (column, field) in fields.iter().zip(layout.fields) {
        check_labels(path, column, field.classes, field.name)?;
    }
    labels.extend_from_slice(&fields[layout.used]);
    Ok(())
}

/// The records of `files`, concatenated in order, as one data set; `source` names it.
fn read_files(files: &[PathBuf], layout: &Layout, source: &Path) -> Result<Dataset> {
    // Validate every length first: a bad last file fails before the others are read, and the
    // total (bounded by the bytes really on disk) sizes the buffers exactly.
    let counts = files
        .iter()
        .map(|f| count_records(f, layout))
        .collect::<Result<Vec<_>>>()?;
    let total: usize = counts.iter().sum();
    let pixel_bytes = total
        .checked_mul(CIFAR_IMAGE_BYTES)
        .ok_or_else(|| Error::format(source, format!("{total} images do not fit in memory")))?;
    let mut pixels = Vec::with_capacity(pixel_bytes);
    let mut labels = Vec::with_capacity(total);
    for (file, &records) in files.iter().zip(&counts) {
        append_records(file, records, layout, &mut pixels, &mut labels)?;
    }
    let images =
        Array4::from_shape_vec((total, 3, 32, 32), pixels).expect("whole records were read");
    Dataset::new(images, labels, layout.classes(), source)
}

/// One CIFAR-10 batch file (e.g. `test_batch.bin`).
pub fn read_cifar10_file(path: &Path) -> Result<Dataset> {
    read_files(&[path.to_path_buf()], &cifar10_layout(), path)
}

/// One CIFAR-100 file (`train.bin` or `test.bin`).
pub fn read_cifar100_file(path: &Path, labels: Cifar100Labels) -> Result<Dataset> {
    read_files(&[path.to_path_buf()], &cifar100_layout(labels), path)
}

/// `dir` itself if it holds `marker`, else `dir/subdir` if that does, else `None`.
fn locate(dir: &Path, subdir: &str, marker: &str) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(subdir)]
        .into_iter()
        .find(|d| d.join(marker).is_file())
}

/// Where the CIFAR-10 batch files of `dir` are (`dir` or `dir/cifar-10-batches-bin`), if any of
/// them is present.
pub fn find_cifar10_files(dir: &Path) -> Option<PathBuf> {
    std::iter::once(CIFAR10_TEST_FILE)
        .chain(CIFAR10_TRAIN_FILES)
        .find_map(|marker| locate(dir, CIFAR10_SUBDIR, marker))
}

/// Where the CIFAR-100 files of `dir` are (`dir` or `dir/cifar-100-binary`), if either is present.
pub fn find_cifar100_files(dir: &Path) -> Option<PathBuf> {
    [CIFAR100_TRAIN_FILE, CIFAR100_TEST_FILE]
        .into_iter()
        .find_map(|marker| locate(dir, CIFAR100_SUBDIR, marker))
}

fn require_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::format(dir, "data directory does not exist"))
    }
}

/// A CIFAR-10 directory: all five training batches (50 000 images in the official set) and the
/// test batch, in `dir` or `dir/cifar-10-batches-bin`.
pub fn load_cifar10_dir(dir: &Path) -> Result<TrainTest> {
    require_dir(dir)?;
    let root = find_cifar10_files(dir).unwrap_or_else(|| dir.to_path_buf());
    let layout = cifar10_layout();
    let train_files: Vec<PathBuf> = CIFAR10_TRAIN_FILES.iter().map(|f| root.join(f)).collect();
    let test_file = root.join(CIFAR10_TEST_FILE);
    TrainTest::new(
        (read_files(&train_files, &layout, &root)?, &root),
        (
            read_files(std::slice::from_ref(&test_file), &layout, &test_file)?,
            &test_file,
        ),
        root.clone(),
        DataKind::Cifar10,
    )
}

/// A CIFAR-100 directory: `train.bin` and `test.bin` in `dir` or `dir/cifar-100-binary`.
pub fn load_cifar100_dir(dir: &Path, labels: Cifar100Labels) -> Result<TrainTest> {
    require_dir(dir)?;
    let root = find_cifar100_files(dir).unwrap_or_else(|| dir.to_path_buf());
    let (train_file, test_file) = (
        root.join(CIFAR100_TRAIN_FILE),
        root.join(CIFAR100_TEST_FILE),
    );
    TrainTest::new(
        (read_cifar100_file(&train_file, labels)?, &train_file),
        (read_cifar100_file(&test_file, labels)?, &test_file),
        root.clone(),
        DataKind::Cifar100,
    )
}
