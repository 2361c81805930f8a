//! [`with_spinning_workers`]: the other workers of the pool wait for work by spinning instead of
//! sleeping while a job runs.
//!
//! Why: a training step is a chain of parallel regions (a GEMM split in two, an elementwise loop
//! in chunks) separated by serial stretches. An idle rayon worker sleeps on a futex soon after
//! its last job, and waking it for the next region costs a system call on the main thread and,
//! in a VM, the wake-up of a halted virtual CPU: `perf` of the GRU bench on 2 threads put 20% of
//! all samples in `sched_yield`, futex sleep and wake. PyTorch's OpenMP threads spin-wait the
//! same way between parallel regions.
//!
//! The other workers each run a keeper job that calls `rayon::yield_now` (which runs any job it
//! can find or steal) until the work is done, yielding the CPU to the OS between polls once idle
//! for a while and napping once idle for milliseconds, and none when the pool has more threads
//! than the machine has cores. Who runs a
//! job never changes a result (every split is fixed by the shapes), so this changes only the
//! time.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Empty polls (a few microseconds in all) before an idle keeper also yields its CPU to the OS
/// on every poll, as rayon's own idle loop does before it sleeps.
const SPINS_BEFORE_YIELDING: u32 = 1000;
/// Yielding polls (some milliseconds: far longer than any gap between a training step's parallel
/// regions) before an idle keeper naps between polls, so a long serial stretch (loading data,
/// writing a checkpoint) does not keep a core busy. A job pushed while it naps is not lost: the
/// thread that pushed it runs it itself if no one has taken it.
const YIELDS_BEFORE_NAPPING: u32 = 10_000;
const NAP: std::time::Duration = std::time::Duration::from_micros(200);

thread_local! {
    /// Whether this thread is already running a keeper (a second one stolen onto it returns).
    static KEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on the calling worker of the current rayon pool while the pool's other workers
/// spin for jobs. Outside a pool, or with one thread, it just runs `work`.
pub fn with_spinning_workers<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let Some(caller) = rayon::current_thread_index() else {
        return work();
    };
    let threads = rayon::current_num_threads();
    // More threads than cores: a spinning keeper would take CPU time from a thread with work.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads <= 1 || threads > cores {
        return work();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| keep(caller, &done));
        }
        // Set however `work` ends: the scope waits for the keepers even when `work` panics.
        let _stop_keepers = SetOnDrop(&done);
        work()
    })
}

/// Sets the flag when dropped (on return and on unwinding).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// One keeper: spins for jobs until `done`. It returns at once on the caller's own thread (the
/// caller could pop a keeper while it waits inside `work`, and spinning there would never let
/// `work` finish) and on a thread already keeping.
fn keep(caller: usize, done: &AtomicBool) {
    if rayon::current_thread_index() == Some(caller) || KEEPING.with(|k| k.replace(true)) {
        return;
    }
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle = 0,
            _ => {
                idle = idle.saturating_add(1);
                if idle < SPINS_BEFORE_YIELDING {
                    std::hint::spin_loop();
                } else if idle < SPINS_BEFORE_YIELDING + YIELDS_BEFORE_NAPPING {
                    // Let the OS run anything else waiting for this CPU.
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(NAP);
                }
            }
        }
    }
    KEEPING.with(|k| k.set(false));
}
