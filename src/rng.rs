//! Seeded randomness. Every random draw in the crate comes from a [`Rng`] seeded explicitly, so
//! the same seed gives bit-identical runs. ChaCha8 is used (not `StdRng`) because its output
//! stream is fixed across `rand` versions and platforms.

use rand::{Rng as _, SeedableRng};

/// The crate's random number generator.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator for `seed`.
pub fn seeded(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// A generator for one purpose derived from a run seed (`stream` separates e.g. initialisation,
/// shuffling and dropout, so changing one does not shift the others).
pub fn derived(seed: u64, stream: u64) -> Rng {
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Uniform in [lo, hi).
pub fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// A standard normal sample (Box-Muller on two uniforms; one of the pair is discarded so that
/// each call consumes the same amount of randomness).
pub fn standard_normal(rng: &mut Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], so ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
