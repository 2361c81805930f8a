//! The sparse export (`model.sparse.safetensors`): the same tensors as the dense export
//! (`checkpoint::export_tensors`, the PyTorch `state_dict` with effective weights), with every
//! weight that is smaller in compressed sparse rows stored that way. Format in `docs/sparse.md`:
//!
//! - a dense tensor `name` is stored as in the dense export (F32/F64, I64 counters);
//! - a sparse tensor `name` of shape `[d0, d1, ...]`, seen as a `d0 x (d1*...)` matrix, is four
//!   tensors: `name.shape` (I64, the dense shape), `name.row_offsets` (U32, `d0 + 1`
//!   nondecreasing offsets from 0 to nnz), `name.col_indices` (U16 when a row has at most 65,536
//!   entries, else U32; nnz column indices, ascending within a row), `name.values` (F32/F64, nnz).
//!
//! Reading validates everything against the file's own sizes before allocating anything from its
//! contents, and densifies a tensor only after its shape has been checked against the model's.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::IxDyn;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::io::atomic::write_atomic;
use crate::io::checkpoint::{Checkpoint, export_tensors, is_counter, load_into};
use crate::nn::Module;
use crate::tape::Tensor;

/// Metadata key naming the format, so a reader can tell the file from a dense export.
pub const FORMAT_KEY: &str = "sparsegrad_format";
/// This format's version string.
pub const FORMAT: &str = "sparse-csr-1";

const PARTS: [&str; 4] = ["shape", "row_offsets", "col_indices", "values"];

/// A weight in compressed sparse rows, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrTensor<F> {
    pub shape: Vec<usize>,
    pub row_offsets: Vec<u32>,
    pub col_indices: Vec<u32>,
    pub values: Vec<F>,
}

impl<F: Float> CsrTensor<F> {
    /// The nonzeros of `t` (rank >= 2) by rows of its first axis.
    pub fn from_dense(t: &Tensor<F>) -> Option<Self> {
        let shape = t.shape().to_vec();
        let rows = *shape.first()?;
        let cols: usize = shape[1..].iter().product();
        if shape.len() < 2 || u32::try_from(cols).is_err() || u32::try_from(t.len()).is_err() {
            return None;
        }
        let dense = t.as_standard_layout();
        let mut csr = CsrTensor {
            shape,
            row_offsets: vec![0],
            col_indices: Vec::new(),
            values: Vec::new(),
        };
        for row in dense
            .as_slice()
            .expect("standard layout")
            .chunks(cols.max(1))
        {
            for (c, &v) in row.iter().enumerate().filter(|(_, v)| **v != F::zero()) {
                csr.col_indices.push(c as u32);
                csr.values.push(v);
            }
            csr.row_offsets.push(csr.values.len() as u32);
        }
        csr.row_offsets.resize(rows + 1, csr.values.len() as u32);
        Some(csr)
    }

    fn cols(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Bytes this tensor takes in the file (data only).
    fn stored_bytes(&self) -> usize {
        let index = if self.cols() <= 1 << 16 { 2 } else { 4 };
        8 * self.shape.len()
            + 4 * self.row_offsets.len()
            + self.values.len() * (index + std::mem::size_of::<F>())
    }

    /// The dense tensor (allocates `shape`'s product: check the shape first).
    pub fn to_dense(&self) -> Tensor<F> {
        let cols = self.cols();
        let mut dense = vec![F::zero(); self.shape.iter().product()];
        for (r, w) in self.row_offsets.windows(2).enumerate() {
            for k in w[0] as usize..w[1] as usize {
                dense[r * cols + self.col_indices[k] as usize] = self.values[k];
            }
        }
        Tensor::from_shape_vec(IxDyn(&self.shape), dense).expect("shape checked on reading")
    }
}

/// One stored tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored<F> {
    Dense(Tensor<F>),
    Sparse(CsrTensor<F>),
}

/// The model's export tensors, each sparse where that is smaller, in export order.
pub fn sparse_export_tensors<F: Float>(model: &dyn Module<F>) -> Vec<(String, Stored<F>)> {
    export_tensors(model)
        .into_iter()
        .map(|(name, t)| {
            let dense_bytes = t.len() * std::mem::size_of::<F>();
            let stored = match CsrTensor::from_dense(&t) {
                Some(csr) if !is_counter(&name) && csr.stored_bytes() < dense_bytes => {
                    Stored::Sparse(csr)
                }
                _ => Stored::Dense(t),
            };
            (name, stored)
        })
        .collect()
}

fn float_bytes<F: Float>(values: &[F]) -> (Dtype, Vec<u8>) {
    if F::DTYPE == "f64" {
        let b = values.iter().flat_map(|v| v.f64().to_le_bytes()).collect();
        (Dtype::F64, b)
    } else {
        let b = values.iter().flat_map(|v| (v.f64() as f32).to_le_bytes());
        (Dtype::F32, b.collect())
    }
}

/// Writes the sparse export of `model` to `path` (atomically).
pub fn write_sparse_export<F: Float>(path: &Path, model: &dyn Module<F>) -> Result<()> {
    let mut encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, stored) in sparse_export_tensors(model) {
        match stored {
            Stored::Dense(t) => {
                let flat: Vec<F> = t.iter().copied().collect();
                let (dtype, bytes) = if is_counter(&name) {
                    let b = flat
                        .iter()
                        .flat_map(|v| (v.f64().round() as i64).to_le_bytes());
                    (Dtype::I64, b.collect())
                } else {
                    float_bytes(&flat)
                };
                encoded.push((name, dtype, t.shape().to_vec(), bytes));
            }
            Stored::Sparse(csr) => {
                let nnz = csr.values.len();
                let shape: Vec<u8> = csr
                    .shape
                    .iter()
                    .flat_map(|&d| (d as i64).to_le_bytes())
                    .collect();
                let rows: Vec<u8> = csr
                    .row_offsets
                    .iter()
                    .flat_map(|o| o.to_le_bytes())
                    .collect();
                let (col_dtype, cols) = if csr.cols() <= 1 << 16 {
                    let b = csr
                        .col_indices
                        .iter()
                        .flat_map(|&c| (c as u16).to_le_bytes());
                    (Dtype::U16, b.collect())
                } else {
                    let b = csr.col_indices.iter().flat_map(|c| c.to_le_bytes());
                    (Dtype::U32, b.collect())
                };
                let (val_dtype, vals) = float_bytes(&csr.values);
                let rank = csr.shape.len();
                let n_rows = csr.row_offsets.len();
                encoded.push((format!("{name}.shape"), Dtype::I64, vec![rank], shape));
                encoded.push((
                    format!("{name}.row_offsets"),
                    Dtype::U32,
                    vec![n_rows],
                    rows,
                ));
                encoded.push((format!("{name}.col_indices"), col_dtype, vec![nnz], cols));
                encoded.push((format!("{name}.values"), val_dtype, vec![nnz], vals));
            }
        }
    }
    let views = encoded
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| {
                    Error::invalid(format!("{}: cannot store {name}: {e}", path.display()))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let info = HashMap::from([(FORMAT_KEY.to_string(), FORMAT.to_string())]);
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::invalid(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Reads every tensor of a sparse export as stored. Sizes, dtypes and indices are checked against
/// the file itself; nothing is allocated from a size the file merely claims. Errors name the file
/// and the tensor.
pub fn read_sparse_export<F: Float>(path: &Path) -> Result<Vec<(String, Stored<F>, Dtype)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::format(path, m);
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    let format = header.metadata().as_ref().and_then(|m| m.get(FORMAT_KEY));
    if format.map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a sparse export (metadata {FORMAT_KEY} is {format:?}, expected {FORMAT:?})"
        )));
    }
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let sparse_bases: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".shape").map(String::from))
        .collect();
    let part_of = |n: &str| {
        PARTS.iter().any(|p| {
            n.strip_suffix(p)
                .and_then(|b| b.strip_suffix('.'))
                .is_some_and(|b| sparse_bases.iter().any(|s| s == b))
        })
    };
    let mut out = Vec::new();
    for name in names.iter().filter(|n| !part_of(n)) {
        let view = file.tensor(name).expect("listed by the file");
        let values = decode_floats::<F>(&view, true).map_err(|m| bad(format!("{name}: {m}")))?;
        let t = Tensor::from_shape_vec(IxDyn(view.shape()), values).expect("sizes checked");
        out.push((name.clone(), Stored::Dense(t), view.dtype()));
    }
    for base in &sparse_bases {
        let (csr, dtype) = read_csr::<F>(&file, base).map_err(|m| bad(format!("{base}: {m}")))?;
        out.push((base.clone(), Stored::Sparse(csr), dtype));
    }
    Ok(out)
}

/// Floats (or I64 counters when `counters`) of a tensor view.
fn decode_floats<F: Float>(
    view: &TensorView<'_>,
    counters: bool,
) -> std::result::Result<Vec<F>, String> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| F::c(f32::from_le_bytes(c.try_into().unwrap()) as f64))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| F::c(f64::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        Dtype::I64 if counters => b
            .chunks_exact(8)
            .map(|c| F::c(i64::from_le_bytes(c.try_into().unwrap()) as f64))
            .collect(),
        other => return Err(format!("unsupported dtype {other:?}")),
    })
}

fn read_csr<F: Float>(
    file: &SafeTensors<'_>,
    base: &str,
) -> std::result::Result<(CsrTensor<F>, Dtype), String> {
    let part = |p: &str| {
        file.tensor(&format!("{base}.{p}"))
            .map_err(|_| format!("sparse tensor has no `{base}.{p}`"))
    };
    let [shape, rows, cols, vals] = PARTS.map(part);
    let (shape, rows, cols, vals) = (shape?, rows?, cols?, vals?);
    if shape.dtype() != Dtype::I64 || rows.dtype() != Dtype::U32 {
        return Err("shape must be I64 and row_offsets U32".into());
    }
    let shape: Vec<usize> = shape
        .data()
        .chunks_exact(8)
        .map(|c| usize::try_from(i64::from_le_bytes(c.try_into().unwrap())))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| "negative dimension in shape".to_string())?;
    let n_cols = shape
        .iter()
        .skip(1)
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let total = n_cols
        .and_then(|c| c.checked_mul(*shape.first()?))
        .filter(|t| {
            t.checked_mul(std::mem::size_of::<F>())
                .is_some_and(|bytes| bytes <= isize::MAX as usize)
        });
    let (Some(n_cols), Some(_)) = (n_cols, total) else {
        return Err(format!(
            "shape {shape:?} is not a matrix of a representable size"
        ));
    };
    if shape.len() < 2 {
        return Err(format!("shape {shape:?} has rank below 2"));
    }
    let row_offsets: Vec<u32> = rows
        .data()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let col_indices: Vec<u32> = match cols.dtype() {
        Dtype::U16 => cols
            .data()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect(),
        Dtype::U32 => cols
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        other => {
            return Err(format!(
                "col_indices has dtype {other:?}, expected U16 or U32"
            ));
        }
    };
    let values = decode_floats::<F>(&vals, false).map_err(|m| format!("values: {m}"))?;
    let nnz = values.len();
    if row_offsets.len() != shape[0] + 1 {
        return Err(format!(
            "{} row offsets for {} rows",
            row_offsets.len(),
            shape[0]
        ));
    }
    if row_offsets[0] != 0
        || row_offsets.windows(2).any(|w| w[0] > w[1])
        || row_offsets[shape[0]] as usize != nnz
    {
        return Err(format!("row offsets must rise from 0 to the {nnz} values"));
    }
    if col_indices.len() != nnz {
        return Err(format!(
            "{} column indices for {nnz} values",
            col_indices.len()
        ));
    }
    if let Some(&c) = col_indices.iter().find(|&&c| c as usize >= n_cols) {
        return Err(format!(
            "column index {c} out of range for {n_cols} columns"
        ));
    }
    let dtype = vals.dtype();
    Ok((
        CsrTensor {
            shape,
            row_offsets,
            col_indices,
            values,
        },
        dtype,
    ))
}

/// Loads a sparse export into `model` (a model without transforms, like the dense export's
/// reader): every name and shape is checked against the model before a tensor is densified, and
/// all problems are reported in one error naming the file.
pub fn load_sparse_export<F: Float>(model: &mut dyn Module<F>, path: &Path) -> Result<()> {
    let stored = read_sparse_export::<F>(path)?;
    let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
    model.visit("", &mut |name, p| {
        shapes.insert(name.to_string(), p.shape().to_vec());
    });
    let mut problems = Vec::new();
    let mut tensors = Vec::new();
    let mut dtypes = HashMap::new();
    for (name, s, dtype) in stored {
        let t = match s {
            Stored::Dense(t) => t,
            Stored::Sparse(csr) => match shapes.get(&name) {
                Some(shape) if *shape == csr.shape => csr.to_dense(),
                Some(shape) => {
                    problems.push(format!(
                        "{name}: shape {:?} in file, model expects {shape:?}",
                        csr.shape
                    ));
                    continue;
                }
                None => {
                    problems.push(format!("unexpected {name}"));
                    continue;
                }
            },
        };
        dtypes.insert(name.clone(), dtype);
        tensors.push((name, t));
    }
    if !problems.is_empty() {
        return Err(Error::format(
            path,
            format!(
                "sparse export does not match the model: {}",
                problems.join("; ")
            ),
        ));
    }
    let checkpoint = Checkpoint {
        tensors,
        dtypes,
        metadata: BTreeMap::new(),
    };
    load_into(model, &checkpoint, "", path)
}
