//! Checkpoints: round trips, PyTorch naming, strict validation with exact messages, atomic writes.

use std::collections::BTreeMap;

use crate::scratch::Scratch;
use sparsegrad::io::checkpoint::{
    Checkpoint, export_tensors, load, load_into, save, state_tensors,
};
use sparsegrad::models::LeNet300;
use sparsegrad::rng::seeded;

fn temp_dir(name: &str) -> Scratch {
    Scratch::new(&format!("ckpt-{name}"))
}

fn model(seed: u64) -> LeNet300<f32> {
    LeNet300::new(784, 10, &mut seeded(seed))
}

#[test]
fn round_trip_is_bit_exact_with_metadata() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("model.safetensors");
    let m = model(1);
    let mut meta = BTreeMap::new();
    meta.insert("sparsegrad".to_string(), r#"{"epoch":3}"#.to_string());
    save(&path, &state_tensors(&m), &meta).unwrap();
    let ckpt: Checkpoint<f32> = load(&path).unwrap();
    assert_eq!(ckpt.metadata.get("sparsegrad").unwrap(), r#"{"epoch":3}"#);
    assert_eq!(ckpt.metadata.get("format").unwrap(), "pt");
    let mut other = model(2);
    load_into(&mut other, &ckpt, "", &path).unwrap();
    for ((na, a), (nb, b)) in state_tensors(&m).iter().zip(state_tensors(&other).iter()) {
        assert_eq!(na, nb);
        assert_eq!(a, b, "{na} differs after the round trip");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "atomic write left temporary files: {leftovers:?}"
    );
}

#[test]
fn names_are_pytorch_state_dict_names() {
    let names: Vec<String> = export_tensors(&model(0))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "fc3.weight",
            "fc3.bias"
        ]
    );
    let shapes: Vec<Vec<usize>> = export_tensors(&model(0))
        .into_iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], [300, 784], "PyTorch Linear layout is [out, in]");
}

#[test]
fn mismatches_are_all_reported_by_name() {
    let dir = temp_dir("mismatch");
    let path = dir.join("bad.safetensors");
    let mut tensors = state_tensors(&model(0));
    tensors.retain(|(n, _)| n != "fc2.bias");
    tensors[0].1 = ndarray::ArrayD::zeros(ndarray::IxDyn(&[3, 3]));
    tensors.push((
        "extra.weight".to_string(),
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[1])),
    ));
    save(&path, &tensors, &BTreeMap::new()).unwrap();
    let before = state_tensors(&model(5));
    let mut target = model(5);
    let err = load_into(&mut target, &load(&path).unwrap(), "", &path)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: checkpoint does not match the model: fc1.weight: shape [3, 3] in file, model expects [300, 784]; \
             missing fc2.bias; unexpected extra.weight",
            path.display()
        )
    );
    assert_eq!(
        before,
        state_tensors(&target),
        "a failed load must not change the model"
    );
}

#[test]
fn dtype_mismatch_is_reported() {
    let dir = temp_dir("dtype");
    let path = dir.join("f64.safetensors");
    let m64 = LeNet300::<f64>::new(784, 10, &mut seeded(0));
    save(&path, &state_tensors(&m64), &BTreeMap::new()).unwrap();
    let err = load_into(&mut model(0), &load(&path).unwrap(), "", &path)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("{}: checkpoint does not match the model: fc1.weight: dtype F64 in file, model expects F32", path.display())), "{err}");
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_panics() {
    let dir = temp_dir("corrupt");
    let path = dir.join("model.safetensors");
    save(&path, &state_tensors(&model(0)), &BTreeMap::new()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load::<f32>(&truncated).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: not a valid safetensors file (",
            truncated.display()
        )),
        "{err}"
    );
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json").unwrap();
    let err = load::<f32>(&garbage).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: not a valid safetensors file (",
            garbage.display()
        )),
        "{err}"
    );
    let missing = dir.join("missing.safetensors");
    let err = load::<f32>(&missing).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!("{}: ", missing.display())),
        "{err}"
    );
}

#[test]
fn the_same_checkpoint_is_the_same_bytes() {
    // safetensors keeps metadata in a HashMap (random order per instance); the header is sorted.
    let dir = temp_dir("canonical");
    let m = model(3);
    let meta: BTreeMap<String, String> = (0..8)
        .map(|i| (format!("key{i}"), format!("value{i}")))
        .collect();
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    save(&a, &state_tensors(&m), &meta).unwrap();
    save(&b, &state_tensors(&m), &meta).unwrap();
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two saves of one checkpoint differ"
    );
    assert_eq!(
        load::<f32>(&a).unwrap().metadata.len(),
        9,
        "8 keys plus format"
    );
}

/// A safetensors file holding exactly `header` (JSON) and `data`.
fn safetensors_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn empty_tensor_with_sides_past_isize_max_is_an_error() {
    // No elements, so no bytes and safetensors accepts it; but 2^62 x 8 overflows an array's
    // size, which panicked in the decoder (found reading it; fuzz_checkpoint generates such shapes).
    let dir = temp_dir("huge-empty");
    let path = dir.join("model.safetensors");
    let header = r#"{"t":{"dtype":"F32","shape":[0,4611686018427387904,8],"data_offsets":[0,0]}}"#;
    std::fs::write(&path, safetensors_bytes(header, &[])).unwrap();
    for err in [
        load::<f32>(&path).err().expect("refused").to_string(),
        load::<f64>(&path).err().expect("refused").to_string(),
    ] {
        assert_eq!(
            err,
            format!(
                "{}: t: shape [0, 4611686018427387904, 8] is not a valid array shape \
                 (ShapeError/Overflow: arithmetic overflow)",
                path.display()
            )
        );
    }
}
