//! CIFAR-10/100 readers, data-directory detection, augmentation and the train/validation split,
//! on small files written by the tests themselves.

use std::path::Path;

use crate::scratch::Scratch;
use ndarray::{Array3, Axis, array, s};
use proptest::prelude::*;
use sparsegrad::data::cifar::{CIFAR_IMAGE_BYTES, CIFAR10_TRAIN_FILES};
use sparsegrad::data::{
    Augment, Cifar100Labels, CropFlip, DataKind, LoadOptions, Normalize, batches, detect_kind,
    gather, gather_augmented, load_cifar10_dir, load_cifar100_dir, load_dir, load_dir_with,
    read_cifar10_file, read_cifar100_file, split_train_val,
};

// ---- helpers ----------------------------------------------------------------------------------

/// Pixel `(c, y, x)` of the image with global id `id`: distinct per image, channel and position.
fn pixel(id: usize, c: usize, y: usize, x: usize) -> u8 {
    (id * 37 + c * 101 + y * 7 + x * 3) as u8
}

fn image_bytes(id: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(CIFAR_IMAGE_BYTES);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                out.push(pixel(id, c, y, x));
            }
        }
    }
    out
}

/// Records of `label_bytes` followed by the pixels of image `ids[k]`.
fn records(ids: &[usize], labels: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    ids.iter()
        .flat_map(|&id| labels(id).into_iter().chain(image_bytes(id)))
        .collect()
}

fn cifar10_label(id: usize) -> u8 {
    (id % 10) as u8
}

fn cifar100_labels(id: usize) -> (u8, u8) {
    ((id % 20) as u8, (id * 7 % 100) as u8)
}

/// Image ids of the CIFAR-10 test file written by [`write_cifar10`].
const CIFAR10_TEST_IDS: [usize; 2] = [100, 101];

/// A CIFAR-10 directory with training batches of 2, 1, 3, 1, 2 images (ids 0..9 in order) and a
/// test batch with ids 100, 101.
fn write_cifar10(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let sizes = [2, 1, 3, 1, 2];
    let mut next = 0;
    for (file, n) in CIFAR10_TRAIN_FILES.iter().zip(sizes) {
        let ids: Vec<usize> = (next..next + n).collect();
        next += n;
        std::fs::write(dir.join(file), records(&ids, |id| vec![cifar10_label(id)])).unwrap();
    }
    std::fs::write(
        dir.join("test_batch.bin"),
        records(&CIFAR10_TEST_IDS, |id| vec![cifar10_label(id)]),
    )
    .unwrap();
}

/// A CIFAR-100 directory: 5 training images (ids 0..5), 3 test images (ids 50..53).
fn write_cifar100(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let labels = |id| {
        let (coarse, fine) = cifar100_labels(id);
        vec![coarse, fine]
    };
    std::fs::write(dir.join("train.bin"), records(&[0, 1, 2, 3, 4], labels)).unwrap();
    std::fs::write(dir.join("test.bin"), records(&[50, 51, 52], labels)).unwrap();
}

fn write_idx_dir(dir: &Path) {
    for (prefix, n) in [("train", 3u32), ("t10k", 2)] {
        let mut images = vec![0, 0, 8, 3];
        for d in [n, 2, 2] {
            images.extend_from_slice(&d.to_be_bytes());
        }
        images.extend((0..n * 4).map(|v| v as u8));
        let mut labels = vec![0, 0, 8, 1];
        labels.extend_from_slice(&n.to_be_bytes());
        labels.extend((0..n).map(|v| v as u8));
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

fn assert_images(images: ndarray::ArrayView4<u8>, ids: &[usize]) {
    assert_eq!(images.shape(), &[ids.len(), 3, 32, 32]);
    for (img, &id) in images.outer_iter().zip(ids) {
        for ((c, y, x), &p) in img.indexed_iter() {
            assert_eq!(p, pixel(id, c, y, x), "image {id} pixel ({c}, {y}, {x})");
        }
    }
}

fn error_of<T: std::fmt::Debug>(r: sparsegrad::prelude::Result<T>) -> String {
    r.expect_err("malformed input must be rejected").to_string()
}

// ---- readers: round trip ------------------------------------------------------------------------

#[test]
fn cifar10_round_trips_pixels_and_labels() {
    let dir = Scratch::new("data-cifar-c10-roundtrip");
    write_cifar10(dir.path());
    let data = load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(data.kind, DataKind::Cifar10);
    assert_eq!(data.source, dir.path());
    let train_ids: Vec<usize> = (0..9).collect();
    assert_images(data.train.images.view(), &train_ids);
    assert_eq!(
        data.train.labels,
        train_ids
            .iter()
            .map(|&i| cifar10_label(i))
            .collect::<Vec<_>>()
    );
    assert_eq!(data.train.classes, 10);
    assert_images(data.test.images.view(), &CIFAR10_TEST_IDS);
    assert_eq!(data.test.labels, vec![0, 1]);

    let single = read_cifar10_file(&dir.path().join("data_batch_3.bin")).unwrap();
    assert_images(single.images.view(), &[3, 4, 5]);
    assert_eq!(single.labels, vec![3, 4, 5]);
}

#[test]
fn cifar10_batches_in_the_archive_subdirectory_are_found() {
    let dir = Scratch::new("data-cifar-c10-subdir");
    let inner = dir.path().join("cifar-10-batches-bin");
    write_cifar10(&inner);
    let data = load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(data.source, inner);
    assert_eq!(data.train.len(), 9);
    let detected = load_dir(dir.path()).unwrap();
    assert_eq!(detected.kind, DataKind::Cifar10);
    assert_eq!(detected.test.labels, data.test.labels);
}

#[test]
fn cifar100_round_trips_fine_and_coarse_labels() {
    let dir = Scratch::new("data-cifar-c100-roundtrip");
    write_cifar100(dir.path());
    let fine = load_cifar100_dir(dir.path(), Cifar100Labels::Fine).unwrap();
    assert_eq!(fine.kind, DataKind::Cifar100);
    assert_images(fine.train.images.view(), &[0, 1, 2, 3, 4]);
    assert_images(fine.test.images.view(), &[50, 51, 52]);
    assert_eq!(fine.train.classes, 100);
    assert_eq!(
        fine.train.labels,
        (0..5).map(|i| cifar100_labels(i).1).collect::<Vec<_>>()
    );
    assert_eq!(
        fine.test.labels,
        [50, 51, 52].map(|i| cifar100_labels(i).1).to_vec()
    );

    let coarse = load_cifar100_dir(dir.path(), Cifar100Labels::Coarse).unwrap();
    assert_eq!(coarse.train.classes, 20);
    assert_eq!(
        coarse.train.labels,
        (0..5).map(|i| cifar100_labels(i).0).collect::<Vec<_>>()
    );
    assert_eq!(coarse.train.images, fine.train.images);

    // Detection uses fine labels unless told otherwise; the archive subdirectory is accepted.
    let nested = Scratch::new("data-cifar-c100-subdir");
    write_cifar100(&nested.path().join("cifar-100-binary"));
    assert_eq!(
        load_dir(nested.path()).unwrap().train.labels,
        fine.train.labels
    );
    let options = LoadOptions {
        cifar100_labels: Cifar100Labels::Coarse,
    };
    assert_eq!(
        load_dir_with(nested.path(), &options).unwrap().train.labels,
        coarse.train.labels
    );
    let single = read_cifar100_file(&dir.path().join("test.bin"), Cifar100Labels::Coarse).unwrap();
    assert_eq!(single.labels, coarse.test.labels);
}

// ---- readers: error paths -------------------------------------------------------------------------

#[test]
fn cifar_length_not_a_whole_number_of_records_is_an_error() {
    let dir = Scratch::new("data-cifar-c-length");
    let path = dir.path().join("data_batch_1.bin");
    let mut bytes = records(&[0], |_| vec![1]);
    bytes.extend_from_slice(&[0, 0]);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        error_of(read_cifar10_file(&path)),
        format!(
            "{}: length 3075 is not a whole number of 3073-byte records (2 bytes over)",
            path.display()
        )
    );
    std::fs::write(&path, [0u8; 100]).unwrap();
    assert_eq!(
        error_of(read_cifar10_file(&path)),
        format!(
            "{}: length 100 is shorter than one 3073-byte record",
            path.display()
        )
    );
    // A CIFAR-10 file (3073-byte records) is not a CIFAR-100 file (3074-byte records).
    std::fs::write(&path, records(&[0, 1], |_| vec![1])).unwrap();
    assert_eq!(
        error_of(read_cifar100_file(&path, Cifar100Labels::Fine)),
        format!(
            "{}: length 6146 is not a whole number of 3074-byte records (3072 bytes over)",
            path.display()
        )
    );
}

#[test]
fn cifar_empty_file_is_an_error() {
    let dir = Scratch::new("data-cifar-c-empty");
    write_cifar10(dir.path());
    let path = dir.path().join("data_batch_4.bin");
    std::fs::write(&path, []).unwrap();
    assert_eq!(
        error_of(load_cifar10_dir(dir.path())),
        format!("{}: file is empty", path.display())
    );
    let path = dir.path().join("train.bin");
    std::fs::write(&path, []).unwrap();
    assert_eq!(
        error_of(read_cifar100_file(&path, Cifar100Labels::Fine)),
        format!("{}: file is empty", path.display())
    );
}

#[test]
fn cifar_label_out_of_range_is_an_error_naming_the_record() {
    let dir = Scratch::new("data-cifar-c-labels");
    write_cifar10(dir.path());
    let path = dir.path().join("test_batch.bin");
    std::fs::write(&path, records(&[0, 1, 2], |id| vec![[3, 9, 10][id]])).unwrap();
    assert_eq!(
        error_of(load_cifar10_dir(dir.path())),
        format!(
            "{}: label 10 of record 2 is out of range for 10 classes",
            path.display()
        )
    );

    let path = dir.path().join("train.bin");
    std::fs::write(&path, records(&[0, 1], |id| vec![0, [99, 100][id]])).unwrap();
    assert_eq!(
        error_of(read_cifar100_file(&path, Cifar100Labels::Fine)),
        format!(
            "{}: fine label 100 of record 1 is out of range for 100 classes",
            path.display()
        )
    );
    // Both labels are validated whichever is used.
    assert_eq!(
        error_of(read_cifar100_file(&path, Cifar100Labels::Coarse)),
        format!(
            "{}: fine label 100 of record 1 is out of range for 100 classes",
            path.display()
        )
    );
    std::fs::write(&path, records(&[0, 1, 2], |id| vec![[19, 0, 20][id], 5])).unwrap();
    assert_eq!(
        error_of(read_cifar100_file(&path, Cifar100Labels::Fine)),
        format!(
            "{}: coarse label 20 of record 2 is out of range for 20 classes",
            path.display()
        )
    );
}

#[test]
fn cifar_missing_file_is_an_error() {
    let dir = Scratch::new("data-cifar-c-missing");
    write_cifar10(dir.path());
    let path = dir.path().join("data_batch_3.bin");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        error_of(load_cifar10_dir(dir.path())),
        format!("{}: file not found", path.display())
    );
    // Still detected as CIFAR-10 (other batches are there), so the message names the gap.
    assert_eq!(
        error_of(load_dir(dir.path())),
        format!("{}: file not found", path.display())
    );

    let dir = Scratch::new("data-cifar-c100-missing");
    write_cifar100(dir.path());
    let path = dir.path().join("test.bin");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        error_of(load_cifar100_dir(dir.path(), Cifar100Labels::Fine)),
        format!("{}: file not found", path.display())
    );
    let absent = dir.path().join("absent");
    assert_eq!(
        error_of(load_cifar10_dir(&absent)),
        format!("{}: data directory does not exist", absent.display())
    );
}

// ---- format detection -----------------------------------------------------------------------------

#[test]
fn detects_all_three_kinds() {
    let idx = Scratch::new("data-cifar-detect-idx");
    write_idx_dir(idx.path());
    let c10 = Scratch::new("data-cifar-detect-c10");
    write_cifar10(c10.path());
    let c100 = Scratch::new("data-cifar-detect-c100");
    write_cifar100(c100.path());
    assert_eq!(detect_kind(idx.path()).unwrap(), DataKind::Idx);
    assert_eq!(detect_kind(c10.path()).unwrap(), DataKind::Cifar10);
    assert_eq!(detect_kind(c100.path()).unwrap(), DataKind::Cifar100);

    let data = load_dir(idx.path()).unwrap();
    assert_eq!(
        (data.kind, data.train.len(), data.test.len()),
        (DataKind::Idx, 3, 2)
    );
    assert_eq!(data.train.image_shape(), (1, 2, 2));
    assert_eq!(load_dir(c10.path()).unwrap().kind, DataKind::Cifar10);
    assert_eq!(load_dir(c100.path()).unwrap().train.classes, 100);

    let bundled = load_dir(Path::new("mnist-10k")).unwrap();
    assert_eq!(
        (bundled.kind, bundled.train.len(), bundled.test.len()),
        (DataKind::Idx, 8000, 2000)
    );
}

#[test]
fn unrecognised_or_ambiguous_directory_is_an_error() {
    let dir = Scratch::new("data-cifar-detect-none");
    std::fs::write(dir.path().join("readme.txt"), "nothing here").unwrap();
    assert_eq!(
        error_of(load_dir(dir.path())),
        format!(
            "{}: not a recognised data directory: expected MNIST-style IDX files \
             (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, \
             t10k-labels-idx1-ubyte, each optionally .gz), CIFAR-10 binary batches \
             (data_batch_1.bin .. data_batch_5.bin and test_batch.bin, here or in cifar-10-batches-bin/) \
             or CIFAR-100 binary files (train.bin and test.bin, here or in cifar-100-binary/)",
            dir.path().display()
        )
    );
    write_cifar10(dir.path());
    write_cifar100(dir.path());
    assert_eq!(
        error_of(detect_kind(dir.path())),
        format!(
            "{}: holds files of more than one data set (cifar10, cifar100); point at a directory with only one",
            dir.path().display()
        )
    );
    let absent = dir.path().join("absent");
    assert_eq!(
        error_of(load_dir(&absent)),
        format!("{}: data directory does not exist", absent.display())
    );
}

#[test]
fn kinds_choose_their_standard_preprocessing() {
    assert_eq!(DataKind::Idx.default_augment(3), None);
    assert_eq!(
        DataKind::Cifar10.default_augment(3),
        Some(Augment {
            pad: 4,
            flip: true,
            seed: 3
        })
    );
    assert_eq!(
        DataKind::Cifar100.default_augment(3),
        Some(Augment::cifar(3))
    );
    assert_eq!(Normalize::cifar10().mean, vec![0.4914, 0.4822, 0.4465]);
    assert_eq!(Normalize::cifar10().std, vec![0.2470, 0.2435, 0.2616]);
    assert_eq!(
        (Normalize::mnist().mean, Normalize::mnist().std),
        (vec![0.1307], vec![0.3081])
    );

    let dir = Scratch::new("data-cifar-preprocess");
    write_cifar10(&dir.path().join("c10"));
    write_cifar100(&dir.path().join("c100"));
    let c10 = load_dir(&dir.path().join("c10")).unwrap();
    assert_eq!(c10.default_normalize(), Normalize::cifar10());
    let c100 = load_dir(&dir.path().join("c100")).unwrap();
    assert_eq!(c100.default_normalize(), Normalize::fit(&c100.train));
}

// ---- augmentation -----------------------------------------------------------------------------

#[test]
fn augmentation_is_a_pure_function_of_seed_epoch_and_index() {
    let aug = Augment::cifar(42);
    for epoch in 0..3 {
        for i in 0..20 {
            assert_eq!(aug.draw(epoch, i), Augment::cifar(42).draw(epoch, i));
        }
    }
    let differ = |a: &dyn Fn(usize) -> CropFlip, b: &dyn Fn(usize) -> CropFlip| {
        (0..200).filter(|&i| a(i) != b(i)).count()
    };
    // Identical draws have probability 1/162 per sample (9 x 9 offsets x 2 flips).
    assert!(
        differ(&|i| aug.draw(0, i), &|i| aug.draw(1, i)) > 180,
        "epochs must draw afresh"
    );
    assert!(
        differ(&|i| aug.draw(0, i), &|i| Augment::cifar(43).draw(0, i)) > 180,
        "seeds must differ"
    );
    assert!(
        differ(&|i| aug.draw(0, i), &|i| aug.draw(0, i + 1)) > 180,
        "samples must differ"
    );

    // The draws cover every offset in 0..=8 and flip about half the time.
    let draws: Vec<CropFlip> = (0..4000).map(|i| aug.draw(0, i)).collect();
    for offset in 0..=8 {
        assert!(draws.iter().any(|d| d.dy == offset) && draws.iter().any(|d| d.dx == offset));
    }
    assert!(draws.iter().all(|d| d.dy <= 8 && d.dx <= 8));
    let flips = draws.iter().filter(|d| d.flip).count();
    assert!((1800..2200).contains(&flips), "{flips} flips in 4000");
    let no_flip = Augment {
        flip: false,
        ..Augment::cifar(42)
    };
    assert!((0..200).all(|i| !no_flip.draw(0, i).flip));
}

#[test]
fn crop_and_flip_of_a_hand_made_image() {
    // Two channels of 3x3, padded by 1: the padded plane of channel 0 is
    //   0 0 0 0 0
    //   0 1 2 3 0
    //   0 4 5 6 0
    //   0 7 8 9 0
    //   0 0 0 0 0
    let image = Array3::from_shape_fn((2, 3, 3), |(c, y, x)| (10 * c + 3 * y + x + 1) as u8);
    let at = |dy, dx, flip| CropFlip { dy, dx, flip }.apply(image.view(), 1);

    let top_left = at(0, 0, false);
    assert_eq!(
        top_left.index_axis(Axis(0), 0),
        array![[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    );
    assert_eq!(
        top_left.index_axis(Axis(0), 1),
        array![[0, 0, 0], [0, 11, 12], [0, 14, 15]]
    );
    assert_eq!(
        at(2, 2, false).index_axis(Axis(0), 0),
        array![[5, 6, 0], [8, 9, 0], [0, 0, 0]]
    );
    assert_eq!(at(1, 1, false), image, "the centred crop is the image");
    assert_eq!(
        at(1, 1, true).index_axis(Axis(0), 0),
        array![[3, 2, 1], [6, 5, 4], [9, 8, 7]]
    );
    // Crop first (columns 2..5 of the padded plane), then mirror.
    assert_eq!(
        at(0, 2, true).index_axis(Axis(0), 0),
        array![[0, 0, 0], [0, 3, 2], [0, 6, 5]]
    );
    assert_eq!(
        at(2, 0, true).index_axis(Axis(0), 1),
        array![[15, 14, 0], [18, 17, 0], [0, 0, 0]]
    );
}

/// The crop/flip spelled out: build the padded array, slice the window, reverse its columns.
fn crop_flip_reference(image: &Array3<u8>, pad: usize, d: CropFlip) -> Array3<u8> {
    let (c, h, w) = image.dim();
    let mut padded = Array3::<u8>::zeros((c, h + 2 * pad, w + 2 * pad));
    padded
        .slice_mut(s![.., pad..pad + h, pad..pad + w])
        .assign(image);
    let window = padded.slice(s![.., d.dy..d.dy + h, d.dx..d.dx + w]);
    if d.flip {
        window.slice(s![.., .., ..;-1]).to_owned()
    } else {
        window.to_owned()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn crop_flip_matches_the_padded_window(
        (c, h, w, pad) in (1usize..4, 1usize..7, 1usize..7, 0usize..5),
        seed in any::<u64>(),
        dy_frac in 0.0f64..1.0, dx_frac in 0.0f64..1.0, flip in any::<bool>(),
    ) {
        let image = Array3::from_shape_fn((c, h, w), |(ch, y, x)| {
            (seed.wrapping_mul(2654435761).wrapping_add((ch * 64 + y * 8 + x) as u64 * 97) % 255 + 1) as u8
        });
        let pick = |frac: f64| ((frac * (2 * pad + 1) as f64) as usize).min(2 * pad);
        let d = CropFlip { dy: pick(dy_frac), dx: pick(dx_frac), flip };
        prop_assert_eq!(d.apply(image.view(), pad), crop_flip_reference(&image, pad, d));
    }
}

#[test]
fn augmented_batches_do_not_depend_on_batch_composition() {
    let dir = Scratch::new("data-cifar-aug-batches");
    write_cifar10(dir.path());
    let data = load_cifar10_dir(dir.path()).unwrap();
    let norm = Normalize::cifar10();
    let aug = Augment::cifar(7);
    let a = gather_augmented::<f64>(&data.train, &[3, 1, 4], &norm, Some(&aug), 5);
    let b = gather_augmented::<f64>(&data.train, &[4, 0, 8, 3], &norm, Some(&aug), 5);
    assert_eq!(
        a.images.slice(s![0, .., .., ..]),
        b.images.slice(s![3, .., .., ..])
    );
    assert_eq!(
        a.images.slice(s![2, .., .., ..]),
        b.images.slice(s![0, .., .., ..])
    );
    assert_eq!(
        (a.labels.clone(), b.labels.clone()),
        (vec![3, 1, 4], vec![4, 0, 8, 3])
    );

    // Each sample is exactly its own draw applied to its image, padding included, then normalised.
    let crop = aug
        .draw(5, 3)
        .apply(data.train.images.index_axis(Axis(0), 3), 4);
    let expected = crop.mapv(|p| p as f64 / 255.0);
    for c in 0..3 {
        let want = expected
            .index_axis(Axis(0), c)
            .mapv(|v| (v - norm.mean[c]) / norm.std[c]);
        assert_eq!(a.images.slice(s![0, c, .., ..]), want);
    }

    // A later epoch gives different images; no augmentation gives `gather`'s plain batch.
    let later = gather_augmented::<f64>(&data.train, &[3, 1, 4], &norm, Some(&aug), 6);
    assert_ne!(later.images, a.images);
    let plain = gather_augmented::<f32>(&data.train, &[3, 1, 4], &norm, None, 5);
    assert_eq!(
        plain.images,
        gather::<f32>(&data.train, &[3, 1, 4], &norm).images
    );
    let chunks: Vec<_> = batches::<f32>(&data.train, &[3, 1, 4], 2, &norm).collect();
    assert_eq!(
        chunks[1].images.slice(s![0, .., .., ..]),
        plain.images.slice(s![2, .., .., ..])
    );
}

// ---- train / validation split ---------------------------------------------------------------

#[test]
fn split_train_val_is_seeded_disjoint_and_covering() {
    for (n, fraction, n_val) in [
        (100, 0.1, 10),
        (10, 0.25, 2),
        (7, 0.0, 0),
        (1, 0.5, 0),
        (0, 0.3, 0),
    ] {
        let (train, val) = split_train_val(n, fraction, 9).unwrap();
        assert_eq!(val.len(), n_val, "n {n} fraction {fraction}");
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "disjoint and covering");
        assert!(train.is_sorted() && val.is_sorted());
        assert_eq!(
            split_train_val(n, fraction, 9).unwrap(),
            (train, val),
            "same seed, same split"
        );
    }
    let (_, a) = split_train_val(1000, 0.2, 1).unwrap();
    let (_, b) = split_train_val(1000, 0.2, 2).unwrap();
    assert_ne!(a, b, "different seeds hold out different samples");
    assert_ne!(
        a,
        (800..1000).collect::<Vec<_>>(),
        "the held-out set is random, not the tail"
    );
}

#[test]
fn split_train_val_rejects_fractions_outside_zero_to_one() {
    for (fraction, shown) in [(1.0, "1"), (-0.1, "-0.1"), (1.5, "1.5"), (f64::NAN, "NaN")] {
        assert_eq!(
            error_of(split_train_val(10, fraction, 0)),
            format!("validation fraction {shown} is outside [0, 1)")
        );
    }
}
