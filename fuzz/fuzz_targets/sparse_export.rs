//! The sparse export (`io::sparse_export`): its reader in both element types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsegrad::io::sparse_export::read_sparse_export;

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file("model.sparse.safetensors", data);
    common::check(read_sparse_export::<f32>(&path).map(|_| ()), &path);
    common::check(read_sparse_export::<f64>(&path).map(|_| ()), &path);
});
