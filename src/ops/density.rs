//! Density estimates of a layer's weights: the `p` in FCPTS's bridge derivative
//! dr/dt = p(t) + p(-t) (Gong et al. 2024, eq. 11).
//!
//! Two estimators:
//! - [`Density::Kde`] (the paper, eq. 12): a Gaussian kernel density estimate on `n` weights picked
//!   deterministically as evenly spaced order statistics (no RNG, so every step and every run sees
//!   the same sample for the same weights). The paper's setting is n = 100, h = 0.5 ([`Density::paper`]).
//! - [`Density::Histogram`] (the authors' released code, `threshold2sparsity.backward` in
//!   ModelTC/FCPTS `main.py`): a 100-bin histogram of all the layer's (signed) weights over
//!   [min, max], normalised to integrate to 1 ([`Density::authors_code`]).
//!
//! **Scale of a fixed bandwidth.** The paper gives h = 0.5 without saying on what scale; on raw
//! weights (std ~0.01-0.1) it would smooth the density into a flat line. We read it as a bandwidth
//! on weights normalised by their standard deviation: [`Bandwidth::Fixed`]`(h)` means a kernel of
//! width `h * sigma` on the raw weights, sigma the population standard deviation of *all* the
//! layer's weights. [`Bandwidth::Silverman`] is scale-equivariant and is computed on the sample in
//! raw units. Either way [`DensityEstimate::Kde::bandwidth`] holds the width actually used, in raw
//! units, so the estimate is p(x) = 1/(n h) sum_i phi((x - w_i) / h).

use rayon::prelude::*;

use crate::float::Float;
use crate::tape::Tensor;

/// How the KDE bandwidth is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bandwidth {
    /// Silverman's rule of thumb on the sample: 0.9 min(sd, IQR / 1.34) n^(-1/5), with sd the
    /// sample standard deviation (n - 1 denominator) and IQR from linearly interpolated quartiles.
    Silverman,
    /// `h` in units of the layer's weight standard deviation (see the module documentation).
    Fixed(f64),
}

/// Which estimator of the weight density the sparsity-rate derivative uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Density {
    /// Gaussian KDE on `samples` evenly spaced order statistics of the weights (all weights if the
    /// layer has at most `samples`).
    Kde {
        bandwidth: Bandwidth,
        samples: usize,
    },
    /// Histogram with `bins` equal bins over [min w, max w], density = count / (N * width).
    Histogram { bins: usize },
}

impl Density {
    /// The paper's setting (eq. 12): n = 100 samples, h = 0.5 (on std-normalised weights).
    pub fn paper() -> Self {
        Density::Kde {
            bandwidth: Bandwidth::Fixed(0.5),
            samples: 100,
        }
    }

    /// The authors' released code: a 100-bin histogram over all weights.
    pub fn authors_code() -> Self {
        Density::Histogram { bins: 100 }
    }

    /// Fits the estimator to `w` (all entries, any shape).
    pub fn estimate<F: Float>(&self, w: &Tensor<F>) -> DensityEstimate {
        // A contiguous slice iterates far faster than ndarray's n-dimensional iterator.
        let values: Vec<f64> = match w.as_slice_memory_order() {
            Some(flat) => flat.iter().map(|x| x.f64()).collect(),
            None => w.iter().map(|x| x.f64()).collect(),
        };
        // Equal weights (no spread) are a point mass; checked exactly, since a computed standard
        // deviation of equal values is rounding noise, not zero.
        let first = values.first().copied();
        if values.iter().all(|&v| Some(v) == first) {
            return DensityEstimate::Degenerate;
        }
        match *self {
            Density::Kde { bandwidth, samples } => {
                assert!(samples > 0, "Density::Kde needs at least one sample");
                let sigma = population_std(&values);
                let sample = order_statistics(values, samples);
                let h = match bandwidth {
                    Bandwidth::Fixed(h) => {
                        assert!(h > 0.0, "Density::Kde: bandwidth {h} must be positive");
                        h * sigma
                    }
                    Bandwidth::Silverman => silverman(&sample),
                };
                if h > 0.0 && h.is_finite() {
                    DensityEstimate::Kde {
                        sample,
                        bandwidth: h,
                    }
                } else {
                    DensityEstimate::Degenerate
                }
            }
            Density::Histogram { bins } => {
                assert!(bins > 0, "Density::Histogram needs at least one bin");
                histogram(&values, bins)
            }
        }
    }
}

/// A fitted density of one layer's weights.
#[derive(Clone, Debug, PartialEq)]
pub enum DensityEstimate {
    /// p(x) = 1/(n h) sum_i phi((x - sample_i) / h); `sample` sorted ascending, `bandwidth` in raw
    /// weight units.
    Kde { sample: Vec<f64>, bandwidth: f64 },
    /// Bin b covers [min + b w, min + (b + 1) w) with w = (max - min) / bins (the last bin also
    /// holds max); `density[b]` = count_b / (N w).
    Histogram {
        min: f64,
        max: f64,
        density: Vec<f64>,
    },
    /// All weights equal (or no spread to set a bandwidth from): the density is a point mass and
    /// we return p = 0 everywhere, so the threshold gets no gradient from the bridge.
    Degenerate,
}

impl DensityEstimate {
    /// The estimated density at `x` (raw weight units).
    pub fn pdf(&self, x: f64) -> f64 {
        match self {
            DensityEstimate::Kde { sample, bandwidth } => {
                let h = *bandwidth;
                let sum: f64 = sample.iter().map(|&wi| std_normal_pdf((x - wi) / h)).sum();
                sum / (sample.len() as f64 * h)
            }
            DensityEstimate::Histogram { min, max, density } => {
                // The authors look the bin up with searchsorted(boundaries, x, right=True) - 1 and
                // return 0 outside [0, bins): x < min and x == max both give 0.
                if x < *min || x > *max {
                    return 0.0;
                }
                let bin = ((x - min) * density.len() as f64 / (max - min)).floor() as usize;
                density.get(bin).copied().unwrap_or(0.0)
            }
            DensityEstimate::Degenerate => 0.0,
        }
    }
}

/// The standard normal density phi(z).
pub fn std_normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn population_std(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// `n` evenly spaced order statistics of `values`, ascending: the elements of rank
/// floor((i + 1/2) N / n) for i = 0..n (every value, sorted, when N <= n). Exact, and so
/// independent of the thread count.
///
/// This runs on every training step of the STR controller and of FCPTS, so large layers are never
/// sorted: values become integer keys in `f64::total_cmp` order; one pass counts them into 2^16
/// buckets by their top bits, a second gathers only the buckets that hold a wanted rank, and a
/// recursive selection inside each of those (in parallel) finishes the job: O(N) plus selection
/// in small buckets, where selecting on the whole array would take O(N log n).
pub fn order_statistics(mut values: Vec<f64>, n: usize) -> Vec<f64> {
    let len = values.len();
    if len <= n {
        values.sort_unstable_by(f64::total_cmp);
        return values;
    }
    let ranks: Vec<usize> = (0..n)
        .map(|i| (((2 * i + 1) * len) / (2 * n)).min(len - 1))
        .collect();
    let keys: Vec<u64> = values.into_iter().map(total_order_key).collect();
    let bucket_of = |key: u64| (key >> (64 - BUCKET_BITS)) as usize;
    let mut starts = vec![0usize; (1 << BUCKET_BITS) + 1];
    for &k in &keys {
        starts[bucket_of(k) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    // The buckets holding wanted ranks, each with its ranks relative to the bucket's start.
    let mut wanted: Vec<(usize, Vec<usize>)> = Vec::new();
    for &r in &ranks {
        let b = starts.partition_point(|&s| s <= r) - 1;
        match wanted.last_mut() {
            Some((last, local)) if *last == b => local.push(r - starts[b]),
            _ => wanted.push((b, vec![r - starts[b]])),
        }
    }
    let mut slot_of_bucket = vec![u32::MAX; 1 << BUCKET_BITS];
    let mut members: Vec<Vec<u64>> = Vec::with_capacity(wanted.len());
    for (slot, (b, _)) in wanted.iter().enumerate() {
        slot_of_bucket[*b] = slot as u32;
        members.push(Vec::with_capacity(starts[*b + 1] - starts[*b]));
    }
    for &k in &keys {
        let slot = slot_of_bucket[bucket_of(k)];
        if slot != u32::MAX {
            members[slot as usize].push(k);
        }
    }
    members
        .par_iter_mut()
        .zip(&wanted)
        .flat_map_iter(|(bucket, (_, local))| {
            select_ranks(bucket, local);
            local
                .iter()
                .map(|&r| from_total_order_key(bucket[r]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Bits of a key that pick its bucket in [`order_statistics`] (2^16 counters stay in cache).
const BUCKET_BITS: u32 = 16;

/// An integer whose unsigned order is `f64::total_cmp`'s: the sign bit is flipped for
/// non-negative values, every bit for negative ones.
fn total_order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 0 {
        bits | (1 << 63)
    } else {
        !bits
    }
}

/// The inverse of [`total_order_key`].
fn from_total_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// Rearranges `v` so that each index in `ranks` (ascending) holds its order statistic.
fn select_ranks(v: &mut [u64], ranks: &[usize]) {
    if ranks.is_empty() {
        return;
    }
    let mid = ranks.len() / 2;
    let at = ranks[mid];
    v.select_nth_unstable(at);
    let (left, right) = v.split_at_mut(at);
    select_ranks(left, &ranks[..mid]);
    let right_ranks: Vec<usize> = ranks[mid + 1..].iter().map(|r| r - at - 1).collect();
    select_ranks(&mut right[1..], &right_ranks);
}

/// Quantile `q` of an ascending sample with linear interpolation (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Silverman's rule on an ascending sample; when one of sd and IQR/1.34 is zero the other is used.
fn silverman(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n < 2 {
        return 0.0;
    }
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let sd = (sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64).sqrt();
    let iqr = (quantile(sorted, 0.75) - quantile(sorted, 0.25)) / 1.34;
    let spread = match (sd > 0.0, iqr > 0.0) {
        (true, true) => sd.min(iqr),
        (true, false) => sd,
        (false, true) => iqr,
        (false, false) => 0.0,
    };
    0.9 * spread * (n as f64).powf(-0.2)
}

/// torch.histc semantics: bins over [min, max], a value equal to max goes to the last bin.
fn histogram(values: &[f64], bins: usize) -> DensityEstimate {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() || max <= min || !(max - min).is_finite() {
        return DensityEstimate::Degenerate;
    }
    let mut counts = vec![0usize; bins];
    for &v in values {
        // v >= min, so truncation is floor (and avoids a libm call per weight).
        let bin = ((v - min) * bins as f64 / (max - min)) as usize;
        counts[bin.min(bins - 1)] += 1;
    }
    let width = (max - min) / bins as f64;
    let scale = 1.0 / (values.len() as f64 * width);
    DensityEstimate::Histogram {
        min,
        max,
        density: counts.iter().map(|&c| c as f64 * scale).collect(),
    }
}

#[cfg(test)]
#[path = "density_tests.rs"]
mod tests;
