//! Files: checkpoints (safetensors), JSON, plots (SVG), atomic writes.

pub mod atomic;
pub mod checkpoint;
pub mod json;
pub mod plot;
pub mod sparse_export;
