//! The loader refuses a directory whose files disagree with each other: test images of another
//! shape than the training images, a labels file where an images file belongs, label counts and
//! values that do not fit; and gzip files are read whole, as `gunzip` reads them.

use std::path::Path;

use ndarray::Array4;
use sparsegrad::data::idx::read_idx;
use sparsegrad::data::{DataKind, Dataset, TrainTest, load_dir, load_mnist_dir};

use crate::scratch::Scratch;
use crate::{assert_idx_error, gzip, idx_bytes, write_mnist_dir};

/// `load_mnist_dir(dir)`'s error message.
fn load_error(dir: &Path) -> String {
    load_mnist_dir(dir)
        .expect_err("inconsistent directory must be refused")
        .to_string()
}

#[test]
fn test_images_of_another_size_are_refused() {
    let dir = Scratch::new("data-idx-split-shape");
    write_mnist_dir(dir.path(), 4, 2); // 2x2 images
    let test = dir.write("t10k-images-idx3-ubyte", &idx_bytes(&[2, 3, 2], &[0; 12]));
    let expected = format!(
        "{}: test images are 1x3x2 (channels x height x width) but the training images in {} are \
         1x2x2; both splits must have the same shape",
        test.display(),
        dir.path().join("train-images-idx3-ubyte").display()
    );
    assert_eq!(load_error(dir.path()), expected);
    // The same through format detection (what `train --data` and `posttrain --data` call).
    assert_eq!(load_dir(dir.path()).unwrap_err().to_string(), expected);
}

#[test]
fn gzip_test_images_of_another_size_are_refused_by_name() {
    let dir = Scratch::new("data-idx-split-shape-gz");
    write_mnist_dir(dir.path(), 4, 2);
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    let train = dir.write(
        "train-images-idx3-ubyte.gz",
        &gzip(&idx_bytes(&[4, 2, 2], &[0; 16])),
    );
    let test = dir.write("t10k-images-idx3-ubyte", &idx_bytes(&[2, 2, 3], &[0; 12]));
    assert_eq!(
        load_error(dir.path()),
        format!(
            "{}: test images are 1x2x3 (channels x height x width) but the training images in {} \
             are 1x2x2; both splits must have the same shape",
            test.display(),
            train.display()
        )
    );
}

fn dataset(channels: usize, classes: usize) -> Dataset {
    let images = Array4::<u8>::zeros((2, channels, 4, 4));
    Dataset::new(images, vec![0, 1], classes, Path::new("mem")).unwrap()
}

#[test]
fn splits_with_other_channels_or_classes_are_refused() {
    let (train, test) = (Path::new("d/train.bin"), Path::new("d/test.bin"));
    let err = TrainTest::new(
        (dataset(1, 10), train),
        (dataset(3, 10), test),
        "d".into(),
        DataKind::Idx,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "d/test.bin: test images are 3x4x4 (channels x height x width) but the training images \
         in d/train.bin are 1x4x4; both splits must have the same shape"
    );
    let err = TrainTest::new(
        (dataset(3, 20), train),
        (dataset(3, 100), test),
        "d".into(),
        DataKind::Cifar100,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "d/test.bin: test labels have 100 classes but the training labels of d/train.bin have 20"
    );
    let ok = TrainTest::new(
        (dataset(3, 10), train),
        (dataset(3, 10), test),
        "d".into(),
        DataKind::Cifar10,
    )
    .unwrap();
    assert_eq!((ok.train.len(), ok.test.len()), (2, 2));
}

#[test]
fn a_labels_file_where_images_belong_is_refused_by_its_rank() {
    let dir = Scratch::new("data-idx-split-swapped");
    write_mnist_dir(dir.path(), 4, 2);
    // An images file (3 dimensions) under the labels name.
    let labels = dir.write("train-labels-idx1-ubyte", &idx_bytes(&[4, 2, 2], &[0; 16]));
    assert_eq!(
        load_error(dir.path()),
        format!(
            "{}: has the shape of an images file (dimensions [4, 2, 2]), not of labels [N]",
            labels.display()
        )
    );
    // A labels file whose header claims 3 dimensions: named by its rank, compressed or not,
    // before its sizes are compared with its length.
    write_mnist_dir(dir.path(), 4, 2);
    let mut bytes = idx_bytes(&[4], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2]);
    bytes[3] = 3;
    for (name, content) in [
        ("t10k-labels-idx1-ubyte", bytes.clone()),
        ("t10k-labels-idx1-ubyte.gz", gzip(&bytes)),
    ] {
        write_mnist_dir(dir.path(), 4, 2);
        if name.ends_with(".gz") {
            std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        }
        let path = dir.write(name, &content);
        assert_eq!(
            load_error(dir.path()),
            format!(
                "{}: has the shape of an images file (dimensions [4, 66051, 67438087]), not of \
                 labels [N]",
                path.display()
            )
        );
    }
}

#[test]
fn label_counts_and_values_must_fit_their_images() {
    let dir = Scratch::new("data-idx-split-labels");
    write_mnist_dir(dir.path(), 4, 2);
    let labels = dir.write("t10k-labels-idx1-ubyte", &idx_bytes(&[3], &[0, 1, 2]));
    assert_eq!(
        load_error(dir.path()),
        format!(
            "{}: 3 labels for 2 images in {}",
            labels.display(),
            dir.path().join("t10k-images-idx3-ubyte").display()
        )
    );
    write_mnist_dir(dir.path(), 4, 2);
    let labels = dir.write("train-labels-idx1-ubyte", &idx_bytes(&[4], &[0, 1, 255, 3]));
    assert_eq!(
        load_error(dir.path()),
        format!(
            "{}: label 255 of record 2 is out of range for 10 classes",
            labels.display()
        )
    );
}

// ---- gzip read whole --------------------------------------------------------------------------

#[test]
fn concatenated_gzip_members_are_one_stream() {
    let dir = Scratch::new("data-idx-gzip-members");
    let whole = idx_bytes(&[6], &[1, 2, 3, 4, 5, 6]);
    let (head, tail) = whole.split_at(7);
    let mut bytes = gzip(head);
    bytes.extend(gzip(tail));
    let path = dir.write("two-members.gz", &bytes);
    assert_eq!(read_idx(&path).unwrap().data, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn bytes_after_a_gzip_stream_are_an_error() {
    let dir = Scratch::new("data-idx-gzip-trailing");
    let mut bytes = gzip(&idx_bytes(&[2], &[1, 2]));
    bytes.extend_from_slice(b"junk after the stream");
    assert_idx_error(
        &dir,
        "junk.gz",
        &bytes,
        "not a valid gzip stream (invalid gzip header)",
    );
}

#[test]
fn gzip_claim_beyond_deflate_ratio_is_refused_before_decoding() {
    let dir = Scratch::new("data-idx-gzip-ratio");
    let bytes = gzip(&idx_bytes(&[1_000_000], &[0; 10]));
    let len = bytes.len();
    assert_idx_error(
        &dir,
        "bomb.gz",
        &bytes,
        &format!(
            "dimensions [1000000] need 1000000 data bytes, more than a {len}-byte gzip file can \
             hold (at most {} bytes decompressed)",
            1032 * len
        ),
    );
}

#[test]
fn the_most_compressible_gzip_still_loads() {
    // 4 MiB of zeros at the best compression: the densest real gzip there is, close to deflate's
    // 1032:1, must stay under the bound.
    let dir = Scratch::new("data-idx-gzip-dense");
    let raw = idx_bytes(&[4 << 20], &vec![0; 4 << 20]);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    let gz = enc.finish().unwrap();
    assert!(
        raw.len() > 1000 * gz.len(),
        "ratio {}",
        raw.len() / gz.len()
    );
    let path = dir.write("zeros.gz", &gz);
    assert_eq!(read_idx(&path).unwrap().data.len(), 4 << 20);
}
