//! The `main` every bench shares.

use criterion::Criterion;

/// `criterion_main!` for `groups`, with the allocator setting every sparsegrad program uses (see
/// `alloc`), run on a worker of the rayon pool as the command line runs
/// (`run::flags::on_threads`).
pub fn main(groups: fn()) {
    sparsegrad::alloc::tune_allocator();
    sparsegrad::run::flags::on_threads(None, || {
        groups();
        Criterion::default().configure_from_args().final_summary();
        Ok(())
    })
    .expect("rayon pool");
}
