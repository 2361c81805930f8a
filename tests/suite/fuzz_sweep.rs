//! The sweep file reader (`sparsegrad sweep FILE`) under damaged input: random bit-flips,
//! truncations and extreme words in a valid sweep file never panic, and every error names the
//! file; what still parses expands (validation included) without panicking.

use proptest::prelude::*;
use sparsegrad::sweep::{Grid, expand};

use crate::fuzz_support::*;
use crate::scratch::Scratch;

/// A small valid sweep file touching every kind of key: axes, model tables, entries with their
/// own sparsities, a post-training entry reading its dense run.
const SEED: &str = r#"models = ["lenet300", "lenet5"]
seeds = [0, 1]
sparsities = [0.9, 0.95]

[train_flags]
epochs = 2
lr = [0.05]

[train_flags.lenet5]
epochs = 1

[posttrain_flags]
iters = 64

[[train]]
method = "dense"

[[train]]
method = "gmp"
sparsities = [0.8]
distribution = "erk"
[train.lenet5]
epochs = 1

[[posttrain]]
method = "wanda"
sparsities = [0.5]
"#;

#[test]
fn the_seed_sweep_file_is_valid() {
    let dir = Scratch::new("fuzz-sweep-seed");
    let path = dir.write("sweep.toml", SEED.as_bytes());
    let grid = Grid::from_file(&path).unwrap();
    let jobs = expand(&grid, &dir.path().join("out")).unwrap();
    // 2 models x 2 seeds x (dense, gmp at 0.8, wanda at 0.5 reading the dense run).
    assert_eq!(jobs.len(), 2 * 2 * 3, "{}", jobs.len());
}

proptest! {
    #![proptest_config(fuzz_config(64))]

    #[test]
    fn fuzz_sweep_file(bytes in damaged(SEED.as_bytes().to_vec())) {
        let dir = Scratch::new("fuzz-sweep");
        let path = dir.write("sweep.toml", &bytes);
        let result = Grid::from_file(&path);
        assert_error_names(&result, &path);
        if let Ok(grid) = result {
            let _ = expand(&grid, &dir.path().join("out"));
        }
    }
}
