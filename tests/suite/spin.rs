//! `kernels::spin::with_spinning_workers`, which `run::flags::on_threads` wraps every run in: the
//! work's result comes back, parallel work inside it gives the same bits as on one thread, and a
//! panic inside it reaches the caller instead of leaving the keepers spinning (a hang). On a
//! machine with one core the keepers are not started and these tests check only the results.

use ndarray::Array2;
use rayon::prelude::*;
use sparsegrad::kernels::gemm::gemm;
use sparsegrad::kernels::spin::with_spinning_workers;
use sparsegrad::run::flags::on_threads;

/// A product split over threads, then many small parallel regions with serial work between
/// them (the pattern the keepers are for), as bits.
fn parallel_work() -> Vec<u32> {
    let a = Array2::from_shape_fn((96, 200), |(i, j)| ((i * 7 + j * 3) % 17) as f32 - 8.0);
    let b = Array2::from_shape_fn((200, 160), |(i, j)| ((i * 5 + j) % 13) as f32 / 13.0);
    let mut c = Array2::<f32>::zeros((96, 160));
    gemm(1.0, a.view(), b.view(), 0.0, c.view_mut());
    let mut bits: Vec<u32> = c.iter().map(|v| v.to_bits()).collect();
    for round in 0..200u32 {
        let (x, y) = rayon::join(|| round.wrapping_mul(3), || round.wrapping_add(11));
        let sum: u32 = (0..1000u32).into_par_iter().map(|i| i ^ round).sum();
        bits.push(x ^ y ^ sum);
    }
    bits
}

#[test]
fn spinning_workers_give_the_result_and_the_bits_of_one_thread() {
    let one = on_threads(Some(1), || Ok(parallel_work())).expect("pool");
    let two = on_threads(Some(2), || Ok(parallel_work())).expect("pool");
    assert_eq!(one, two);
    // A pool of its own (on_threads refuses more threads than cores; without enough cores, no
    // keepers are started).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("pool");
    assert_eq!(one, pool.install(|| with_spinning_workers(parallel_work)));
}

#[test]
fn nested_spinning_scopes_return() {
    let bits = on_threads(Some(2), || Ok(with_spinning_workers(parallel_work))).expect("pool");
    assert_eq!(
        bits,
        on_threads(Some(1), || Ok(parallel_work())).expect("pool")
    );
}

#[test]
fn a_panic_inside_reaches_the_caller_and_stops_the_keepers() {
    let outcome = std::panic::catch_unwind(|| {
        on_threads(Some(2), || -> sparsegrad::error::Result<()> {
            parallel_work();
            panic!("the work failed");
        })
    });
    let message = outcome.expect_err("the panic is propagated");
    assert_eq!(message.downcast_ref::<&str>(), Some(&"the work failed"));
    // The pool still works afterwards (nothing is left spinning on a stale flag).
    assert!(on_threads(Some(2), || Ok(parallel_work())).is_ok());
}
