//! Batch norm's per-channel f64 sums over f32 rows, with explicit AVX-512.
//!
//! The compiler keeps `norm::sums_scalar`'s eight f64 partial sums in 2-lane registers at best
//! (the sums were 60% of a batch-norm forward + backward at ResNet-20's shapes). Here the eight
//! partial sums are the eight f64 lanes of one register: lane `k` adds element `k` of every chunk
//! of eight, after the elements past the last whole chunk have been summed on their own, and the
//! lanes are then combined pairwise in the same order. Every element's terms are computed as
//! there (widen to f64, subtract, multiply, add: no fused multiply-add), so the bits are the
//! same (property-tested below against `sums_scalar`).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::ops::norm::Terms;

/// `norm::sums_scalar` of `terms` over `x` and `g` (equal lengths), for f32 on AVX-512.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sums_f32(x: &[f32], g: &[f32], terms: Terms<f64>) -> [f64; 2] {
    assert_eq!(x.len(), g.len(), "sums_f32: lengths");
    let whole = x.len() / 8 * 8;
    let mut total = [0.0f64; 2];
    for (&xi, &gi) in x[whole..].iter().zip(&g[whole..]) {
        let [u, v] = terms.of(xi, gi);
        total[0] += u;
        total[1] += v;
    }
    let (mut acc_u, mut acc_v) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    // SAFETY (every load): chunk `c .. c + 8` lies inside both slices (c + 8 <= whole).
    let widen =
        |s: &[f32], c: usize| unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(s.as_ptr().add(c))) };
    match terms {
        Terms::Value => {
            for c in (0..whole).step_by(8) {
                acc_u = _mm512_add_pd(acc_u, widen(x, c));
            }
        }
        Terms::SquaredDeviation(mean) => {
            let mean = _mm512_set1_pd(mean);
            for c in (0..whole).step_by(8) {
                let d = _mm512_sub_pd(widen(x, c), mean);
                acc_u = _mm512_add_pd(acc_u, _mm512_mul_pd(d, d));
            }
        }
        Terms::Gradient(mean) => {
            let mean = _mm512_set1_pd(mean);
            for c in (0..whole).step_by(8) {
                let gv = widen(g, c);
                acc_u = _mm512_add_pd(acc_u, gv);
                let centred = _mm512_sub_pd(widen(x, c), mean);
                acc_v = _mm512_add_pd(acc_v, _mm512_mul_pd(gv, centred));
            }
        }
    }
    for (t, acc) in total.iter_mut().zip([acc_u, acc_v]) {
        let mut a = [0.0f64; 8];
        // SAFETY: `a` holds eight f64.
        unsafe { _mm512_storeu_pd(a.as_mut_ptr(), acc) };
        *t += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    }
    total
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ops::norm::sums_scalar;

    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![Just(0.0f32), Just(-0.0), -1e3f32..1e3, -1e-3f32..1e-3]
    }

    proptest! {
        /// The same bits as the scalar loop, for every kind of sum, any length (whole chunks and
        /// a remainder) and mean.
        #[test]
        fn avx512_sums_are_the_scalar_sums(
            (x, g) in (0usize..40).prop_flat_map(|n| (
                proptest::collection::vec(value(), n),
                proptest::collection::vec(value(), n),
            )),
            mean in -10.0f64..10.0,
        ) {
            if !std::arch::is_x86_feature_detected!("avx512f") {
                return Ok(()); // nothing to compare on this CPU
            }
            for terms in [Terms::Value, Terms::SquaredDeviation(mean), Terms::Gradient(mean)] {
                // SAFETY: AVX-512F detected.
                let fast = unsafe { sums_f32(&x, &g, terms) };
                let slow = sums_scalar(&x, &g, |xi, gi| terms.of(xi, gi));
                let bits = |s: [f64; 2]| s.map(f64::to_bits);
                prop_assert_eq!(bits(fast), bits(slow), "{:?}", terms);
            }
        }
    }
}
