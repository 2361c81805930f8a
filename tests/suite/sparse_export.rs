//! The sparse export: round trip, size against the dense export, and clear errors for bad files.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::scratch::Scratch;
use ndarray::IxDyn;
use safetensors::tensor::{Dtype, TensorView};
use sparsegrad::io::checkpoint::{export_tensors, save};
use sparsegrad::io::sparse_export::{
    FORMAT, FORMAT_KEY, Stored, load_sparse_export, read_sparse_export, write_sparse_export,
};
use sparsegrad::models::lenet5::{LeNet5, LeNet5Options};
use sparsegrad::nn::Module;
use sparsegrad::prelude::*;
use sparsegrad::rng::{seeded, uniform};
use sparsegrad::sparsity::mask::Mask;

fn temp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("sparse-export-{name}"))
}

/// A LeNet-5 with random masks keeping `density` of every weight.
fn masked_lenet5(density: f64, seed: u64) -> LeNet5<f32> {
    let mut rng = seeded(seed);
    let mut model = LeNet5::new((1, 28, 28), 10, LeNet5Options::default(), &mut rng).unwrap();
    model.visit_weights_mut("", &mut |_, w| {
        let mask = Tensor::from_shape_simple_fn(IxDyn(w.raw.shape()), || {
            if uniform(&mut rng, 0.0, 1.0) < density {
                1.0f32
            } else {
                0.0
            }
        });
        w.transform = Some(Box::new(Mask::from_tensor(mask).unwrap()));
        w.reapply_mask();
    });
    model
}

fn fresh_lenet5() -> LeNet5<f32> {
    LeNet5::new((1, 28, 28), 10, LeNet5Options::default(), &mut seeded(99)).unwrap()
}

#[test]
fn sparse_export_round_trips_and_is_small() {
    let dir = temp_dir("roundtrip");
    let model = masked_lenet5(0.05, 1);
    let (sparse_path, dense_path) = (dir.join("m.sparse.safetensors"), dir.join("m.safetensors"));
    write_sparse_export(&sparse_path, &model, &Default::default()).unwrap();
    save(&dense_path, &export_tensors(&model), &BTreeMap::new()).unwrap();
    let stored = read_sparse_export::<f32>(&sparse_path).unwrap();
    let sparse_names: Vec<&str> = stored
        .iter()
        .filter(|(_, s, _)| matches!(s, Stored::Sparse(_)))
        .map(|(n, ..)| n.as_str())
        .collect();
    assert_eq!(
        sparse_names,
        ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    );
    let mut loaded = fresh_lenet5();
    load_sparse_export(&mut loaded, &sparse_path).unwrap();
    let (want, got) = (export_tensors(&model), export_tensors(&loaded));
    assert_eq!(want.len(), got.len());
    for ((n1, a), (n2, b)) in want.iter().zip(&got) {
        assert_eq!(n1, n2);
        let bits = |t: &Tensor<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{n1} differs after the round trip");
    }
    let size = |p: &PathBuf| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&sparse_path) / size(&dense_path);
    assert!(
        ratio <= 0.12,
        "sparse export is {:.1}% of the dense one",
        100.0 * ratio
    );
}

/// Writes a hand-made file with the sparse format's metadata.
fn write_raw(path: &PathBuf, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let info = HashMap::from([(FORMAT_KEY.to_string(), FORMAT.to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(info)).unwrap()).unwrap();
}

fn le<T: Copy, const N: usize>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

#[test]
fn sparse_export_reader_names_the_file_and_the_problem() {
    let dir = temp_dir("errors");
    let path = dir.join("bad.safetensors");
    let expect_err = |needle: &str| {
        let e = read_sparse_export::<f32>(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains(needle),
            "error `{e}` should name the file and `{needle}`"
        );
    };
    // A 2x3 matrix with one value per row, then broken in one way at a time.
    let good = |offsets: &[u32], cols: &[u16], shape: &[i64]| {
        vec![
            (
                "w.shape",
                Dtype::I64,
                vec![shape.len()],
                le(shape, i64::to_le_bytes),
            ),
            (
                "w.row_offsets",
                Dtype::U32,
                vec![offsets.len()],
                le(offsets, u32::to_le_bytes),
            ),
            (
                "w.col_indices",
                Dtype::U16,
                vec![cols.len()],
                le(cols, u16::to_le_bytes),
            ),
            (
                "w.values",
                Dtype::F32,
                vec![2],
                le(&[1.0f32, 2.0], f32::to_le_bytes),
            ),
        ]
    };
    write_raw(&path, &good(&[0, 1, 2], &[0, 2], &[2, 3]));
    assert!(read_sparse_export::<f32>(&path).is_ok());
    write_raw(&path, &good(&[0, 1, 2], &[0, 3], &[2, 3]));
    expect_err("column index 3 out of range");
    write_raw(&path, &good(&[0, 2, 1], &[0, 2], &[2, 3]));
    expect_err("row offsets");
    write_raw(&path, &good(&[0, 1, 2], &[0, 2], &[3, 3]));
    expect_err("3 rows");
    write_raw(&path, &good(&[0, 1, 2], &[0, 2], &[2, i64::MAX]));
    expect_err("representable");
    let mut missing = good(&[0, 1, 2], &[0, 2], &[2, 3]);
    missing.remove(2);
    write_raw(&path, &missing);
    expect_err("no `w.col_indices`");
    // Truncated, and a dense export instead of a sparse one.
    let model = masked_lenet5(0.05, 2);
    write_sparse_export(&path, &model, &Default::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    expect_err("not a valid safetensors file");
    save(&path, &export_tensors(&model), &BTreeMap::new()).unwrap();
    expect_err("not a sparse export");
    // A model of another shape is refused by name, before anything is densified.
    write_sparse_export(&path, &model, &Default::default()).unwrap();
    let mut other =
        LeNet5::<f32>::new((1, 32, 32), 10, LeNet5Options::default(), &mut seeded(3)).unwrap();
    let e = load_sparse_export(&mut other, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc1.weight: shape [500, 800] in file"), "{e}");
}
