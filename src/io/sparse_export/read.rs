//! Reading the sparse export: every size, dtype and index is checked against the file itself
//! before anything is allocated from it (format in the parent module and `docs/sparse.md`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::IxDyn;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{CsrTensor, FORMAT, FORMAT_KEY, PARTS, Stored};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::io::checkpoint::{Checkpoint, load_into};
use crate::nn::Module;
use crate::tape::Tensor;

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
