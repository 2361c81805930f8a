//! Checkpoints in the safetensors format, with PyTorch `state_dict` names and layouts.
//!
//! Two kinds of file:
//! - an **export** (`model.safetensors`): exactly the tensors of the equivalent PyTorch model's
//!   `state_dict` — effective (baked) weights under the layer's `weight` name, no transform
//!   parameters — so `safetensors.torch.load_file` + `model.load_state_dict` works in PyTorch;
//! - a **training checkpoint** (`checkpoint.safetensors`): every parameter and buffer by name
//!   (raw weights and transform parameters such as `fc1.weight_threshold`), optimiser state under
//!   `optimizer.` names, and JSON metadata (model, method, config, epoch, step, RNG state), enough
//!   to resume bit-identically.
//!
//! Floats are stored in the model's element type; counters (`num_batches_tracked`) as I64 like
//! PyTorch. Files are written atomically; loading validates names, shapes and dtypes and reports
//! every mismatch by name in one error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::IxDyn;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::io::atomic::write_atomic;
use crate::nn::Module;
use crate::tape::Tensor;

/// Metadata key holding sparsegrad's JSON metadata; `format: pt` is what PyTorch's writer adds.
pub const METADATA_KEY: &str = "sparsegrad";

/// Named tensors in a stable order.
pub type NamedTensors<F> = Vec<(String, Tensor<F>)>;

/// Whether a tensor is an integer counter stored as I64 (PyTorch's `num_batches_tracked`).
pub fn is_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

fn float_dtype<F: Float>() -> Dtype {
    if F::DTYPE == "f64" {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

fn expected_dtype<F: Float>(name: &str) -> Dtype {
    if is_counter(name) {
        Dtype::I64
    } else {
        float_dtype::<F>()
    }
}

fn encode<F: Float>(name: &str, t: &Tensor<F>) -> Vec<u8> {
    let values = t.as_standard_layout();
    match expected_dtype::<F>(name) {
        Dtype::I64 => values
            .iter()
            .flat_map(|v| (v.f64().round() as i64).to_le_bytes())
            .collect(),
        Dtype::F64 => values.iter().flat_map(|v| v.f64().to_le_bytes()).collect(),
        _ => values
            .iter()
            .flat_map(|v| (v.f64() as f32).to_le_bytes())
            .collect(),
    }
}

/// The values of `view` in the element type `F`. safetensors has checked that the bytes match
/// the shape's element count, but not that the shape is one an array can have: `[0, 2^62, 8]`
/// holds no bytes, yet its non-zero sides multiply past `isize::MAX`.
fn decode<F: Float>(view: &TensorView<'_>) -> std::result::Result<Tensor<F>, String> {
    let bytes = view.data();
    let values: Vec<F> = match view.dtype() {
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| F::c(i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| F::c(f64::from_le_bytes(c.try_into().expect("8 bytes"))))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| F::c(f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64))
            .collect(),
    };
    Tensor::from_shape_vec(IxDyn(view.shape()), values)
        .map_err(|e| format!("shape {:?} is not a valid array shape ({e})", view.shape()))
}

/// Writes `tensors` and `metadata` to `path` atomically.
pub fn save<F: Float>(
    path: &Path,
    tensors: &[(String, Tensor<F>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                expected_dtype::<F>(name),
                t.shape().to_vec(),
                encode(name, t),
            )
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| {
                    Error::invalid(format!(
                        "{}: cannot store tensor {name}: {e}",
                        path.display()
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.insert("format".into(), "pt".into());
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| {
        Error::invalid(format!(
            "{}: cannot serialise checkpoint: {e}",
            path.display()
        ))
    })?;
    write_atomic(path, &canonical_header(bytes))
}

/// Rewrites the JSON header with its keys (and the metadata's keys) in sorted order, padded to
/// the same length. safetensors keeps metadata in a `HashMap`, whose order differs from process to
/// process; sorting makes the same checkpoint the same bytes, which the resume guarantee relies on.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    use serde_json::Value;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors writes a JSON object");
    let sorted: BTreeMap<String, Value> = header
        .into_iter()
        .map(|(k, v)| match v {
            Value::Object(map) => {
                let inner: BTreeMap<String, Value> = map.into_iter().collect();
                (
                    k,
                    serde_json::to_value(inner).expect("JSON values serialise"),
                )
            }
            v => (k, v),
        })
        .collect();
    let text = serde_json::to_string(&sorted).expect("JSON values serialise");
    assert!(
        text.len() <= n,
        "canonical header is longer than the original"
    );
    bytes[8..8 + n].copy_from_slice(format!("{text:<n$}").as_bytes());
    bytes
}

/// The contents of a safetensors file.
pub struct Checkpoint<F: Float> {
    pub tensors: NamedTensors<F>,
    /// The stored dtype of each tensor (validated against the model on loading).
    pub dtypes: HashMap<String, Dtype>,
    pub metadata: BTreeMap<String, String>,
}

impl<F: Float> Checkpoint<F> {
    /// The tensors whose names start with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> NamedTensors<F> {
        self.tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(prefix)
                    .map(|rest| (rest.to_string(), t.clone()))
            })
            .collect()
    }
}

/// The metadata of a safetensors file (its header only is parsed).
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file ({e})")))?;
    Ok(header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Reads every tensor and the metadata of a safetensors file. Tensors must be F32, F64 or I64;
/// anything else, a truncated file or a corrupt header is an error naming the file.
pub fn load<F: Float>(path: &Path) -> Result<Checkpoint<F>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a valid safetensors file ({e})")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut problems = Vec::new();
    let mut tensors = Vec::new();
    let mut dtypes = HashMap::new();
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let view = file.tensor(&name).expect("name listed by the file");
        match view.dtype() {
            dtype @ (Dtype::F32 | Dtype::F64 | Dtype::I64) => match decode::<F>(&view) {
                Ok(tensor) => {
                    dtypes.insert(name.clone(), dtype);
                    tensors.push((name, tensor));
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            },
            other => problems.push(format!("{name}: unsupported dtype {other:?}")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::format(path, problems.join("; ")));
    }
    Ok(Checkpoint {
        tensors,
        dtypes,
        metadata,
    })
}

/// Every parameter and buffer of `model` with its name (raw weights and transform parameters).
pub fn state_tensors<F: Float>(model: &dyn Module<F>) -> NamedTensors<F> {
    let mut out = Vec::new();
    model.visit("", &mut |name, p| {
        out.push((name.to_string(), p.value().clone()))
    });
    out
}

/// The model as the equivalent PyTorch `state_dict`: effective weights under the raw weight
/// names, transform parameters left out.
pub fn export_tensors<F: Float>(model: &dyn Module<F>) -> NamedTensors<F> {
    let mut effective: HashMap<String, Tensor<F>> = HashMap::new();
    let mut transform_params: Vec<String> = Vec::new();
    model.visit_weights("", &mut |name, w| {
        if let Some(t) = &w.transform {
            effective.insert(name.to_string(), w.effective());
            t.visit(name, &mut |pname, _| {
                transform_params.push(pname.to_string())
            });
        }
    });
    state_tensors(model)
        .into_iter()
        .filter(|(name, _)| !transform_params.contains(name))
        .map(|(name, t)| match effective.remove(&name) {
            Some(e) => (name, e),
            None => (name, t),
        })
        .collect()
}

/// Copies the checkpoint's tensors (those under `prefix`, e.g. `""` or `"model."`) into `model`'s
/// parameters by name. Every missing name, unexpected name, shape mismatch and dtype mismatch is
/// listed in one error (`source` names the file). Nothing is changed unless everything matches.
pub fn load_into<F: Float>(
    model: &mut dyn Module<F>,
    checkpoint: &Checkpoint<F>,
    prefix: &str,
    source: &Path,
) -> Result<()> {
    let tensors = checkpoint.with_prefix(prefix);
    let mut by_name: HashMap<&str, &Tensor<F>> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut problems = Vec::new();
    let mut assignments: Vec<(String, Tensor<F>)> = Vec::new();
    model.visit("", &mut |name, p| match by_name.remove(name) {
        None => problems.push(format!("missing {name}")),
        Some(t) if t.shape() != p.shape() => problems.push(format!(
            "{name}: shape {:?} in file, model expects {:?}",
            t.shape(),
            p.shape()
        )),
        Some(t) => {
            let stored = checkpoint.dtypes.get(&format!("{prefix}{name}")).copied();
            let expected = expected_dtype::<F>(name);
            match stored {
                Some(d) if d != expected => problems.push(format!(
                    "{name}: dtype {d:?} in file, model expects {expected:?}"
                )),
                _ => assignments.push((name.to_string(), t.clone())),
            }
        }
    });
    let mut unexpected: Vec<&str> = by_name.into_keys().collect();
    unexpected.sort();
    problems.extend(unexpected.iter().map(|n| format!("unexpected {n}")));
    if !problems.is_empty() {
        return Err(Error::format(
            source,
            format!(
                "checkpoint does not match the model: {}",
                problems.join("; ")
            ),
        ));
    }
    let mut values: HashMap<String, Tensor<F>> = assignments.into_iter().collect();
    model.visit_mut("", &mut |name, p| {
        if let Some(v) = values.remove(name) {
            p.set_value(v);
        }
    });
    Ok(())
}
