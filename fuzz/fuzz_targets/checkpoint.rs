//! safetensors checkpoints and exports: the tensor reader in both element types, and the model
//! loader that rebuilds the architecture from the JSON metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsegrad::io::checkpoint::{Checkpoint, load};

mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::as_file("model.safetensors", data);
    common::check(load::<f32>(&path).map(|_: Checkpoint<f32>| ()), &path);
    common::check(load::<f64>(&path).map(|_: Checkpoint<f64>| ()), &path);
    common::check(sparsegrad::run::load_model(&path).map(|_| ()), &path);
});
