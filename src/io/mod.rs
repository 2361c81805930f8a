//! Files: checkpoints (safetensors), run logs (JSON), plots (SVG).

pub mod atomic;
pub mod checkpoint;
pub mod compare;
pub mod plot;
pub mod runlog;
pub mod sparse_export;
