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
//! Reading (the `read` submodule) validates everything against the file's own sizes before allocating anything
//! from its contents, and densifies a tensor only after its shape has been checked against the
//! model's; it has its own file, as the reader of untrusted bytes (fuzzed in
//! `tests/suite/fuzz_parsers.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::IxDyn;
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::io::atomic::write_atomic;
use crate::io::checkpoint::{export_tensors, is_counter};
use crate::nn::Module;
use crate::tape::Tensor;

mod read;
pub use read::{load_sparse_export, read_sparse_export};

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

/// Writes the sparse export of `model` to `path` (atomically), with `metadata` beside the
/// format key (the run's description, as in the dense export).
pub fn write_sparse_export<F: Float>(
    path: &Path,
    model: &dyn Module<F>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
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
    let mut info: HashMap<String, String> = metadata.clone().into_iter().collect();
    info.insert(FORMAT_KEY.to_string(), FORMAT.to_string());
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::invalid(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, &bytes)
}
