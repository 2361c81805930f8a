//! Batch norm's per-channel sums (`norm.rs`): the statistics and the backward's two sums, in
//! `F::Acc` (f64 for f32), row by row; over f32 rows with explicit AVX-512 where the CPU has it.
//!
//! The compiler keeps [`sums_scalar`]'s eight f64 partial sums in 2-lane registers at best
//! (the sums were 60% of a batch-norm forward + backward at ResNet-20's shapes). Here the eight
//! partial sums are the eight f64 lanes of one register: lane `k` adds element `k` of every chunk
//! of eight, after the elements past the last whole chunk have been summed on their own, and the
//! lanes are then combined pairwise in the same order. Every element's terms are computed as
//! there (widen to f64, subtract, multiply, add: no fused multiply-add), so the bits are the
//! same (property-tested below against `sums_scalar`).

#[cfg(target_arch = "x86_64")]
use std::any::TypeId;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use ndarray::ArrayView2;
use num_traits::Zero;

use crate::float::{Accumulator, Float};

/// What a channel sum adds up per element pair `(x, g)`: two sums `[u, v]`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Terms<A> {
    /// `[x, 0]` (the batch mean).
    Value,
    /// `[(x - mean)^2, 0]` (the biased variance).
    SquaredDeviation(A),
    /// `[g, g (x - mean)]` (the backward's two sums).
    Gradient(A),
}

impl<A: Copy> Terms<A> {
    /// The same terms with the mean converted by `f`.
    fn map<B>(self, f: impl Fn(A) -> B) -> Terms<B> {
        match self {
            Terms::Value => Terms::Value,
            Terms::SquaredDeviation(m) => Terms::SquaredDeviation(f(m)),
            Terms::Gradient(m) => Terms::Gradient(f(m)),
        }
    }
}

impl<A: Accumulator> Terms<A> {
    #[inline(always)]
    pub(super) fn of<F: Float<Acc = A>>(self, x: F, g: F) -> [A; 2] {
        match self {
            Terms::Value => [x.acc(), A::zero()],
            Terms::SquaredDeviation(mean) => [(x.acc() - mean).powi(2), A::zero()],
            Terms::Gradient(mean) => [g.acc(), g.acc() * (x.acc() - mean)],
        }
    }
}

/// The two sums of `terms` over equal-length slices `a` (x) and `b` (g), on f32 with AVX-512
/// where the CPU has it ([`sums_f32`], the same bits), else [`sums_scalar`].
fn sums_acc<F: Float>(a: &[F], b: &[F], terms: Terms<F::Acc>) -> [F::Acc; 2] {
    #[cfg(target_arch = "x86_64")]
    if TypeId::of::<F>() == TypeId::of::<f32>() && std::arch::is_x86_feature_detected!("avx512f") {
        let terms =
            terms.map(|m| num_traits::ToPrimitive::to_f64(&m).expect("f32's accumulator is f64"));
        assert_eq!(a.len(), b.len(), "batch norm: channel rows");
        // SAFETY: F is f32 (checked above), so the casts are identities; AVX-512F detected.
        let sums = unsafe {
            let cast = |s: &[F]| std::slice::from_raw_parts(s.as_ptr().cast::<f32>(), s.len());
            sums_f32(cast(a), cast(b), terms)
        };
        return sums.map(F::Acc::c);
    }
    // One loop per kind, so the match stays out of the loop.
    match terms {
        Terms::Value => sums_scalar(a, b, |x, _| Terms::Value.of(x, x)),
        Terms::SquaredDeviation(m) => sums_scalar(a, b, |x, _| Terms::SquaredDeviation(m).of(x, x)),
        Terms::Gradient(m) => sums_scalar(a, b, |x, g| Terms::Gradient(m).of(x, g)),
    }
}

/// The two sums of `f(a, b) = [u, v]` over equal-length slices: the elements past the last
/// whole chunk of eight first, then eight independent partial sums (element `k` of a chunk into
/// sum `k`, so the additions pipeline), combined pairwise in a fixed order.
fn sums_scalar<F: Float>(a: &[F], b: &[F], f: impl Fn(F, F) -> [F::Acc; 2]) -> [F::Acc; 2] {
    let zero = F::Acc::zero();
    let mut acc = [[zero; 8]; 2];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut total = [zero; 2];
    for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
        let [u, v] = f(x, y);
        total[0] += u;
        total[1] += v;
    }
    for (ak, bk) in ac.zip(bc) {
        for (k, (&x, &y)) in ak.iter().zip(bk).enumerate() {
            let [u, v] = f(x, y);
            acc[0][k] += u;
            acc[1][k] += v;
        }
    }
    for (t, a) in total.iter_mut().zip(acc) {
        *t += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    }
    total
}

/// The two sums of `terms` over one channel `[N, L]` of two same-shaped values, row by row.
pub(super) fn channel_sums<F: Float>(
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    terms: Terms<F::Acc>,
) -> [F::Acc; 2] {
    let zero = F::Acc::zero();
    if a.ncols() == 1 {
        // [N, 1] (a 2-D input): one strided column, where rows of one element would each cost
        // a call.
        return a.iter().zip(b).fold([zero, zero], |[s, t], (&x, &y)| {
            let [u, v] = terms.of(x, y);
            [s + u, t + v]
        });
    }
    let mut total = [zero; 2];
    for (ar, br) in a.rows().into_iter().zip(b.rows()) {
        let (a, b) = (
            ar.as_slice().expect("standard"),
            br.as_slice().expect("standard"),
        );
        let [u, v] = sums_acc(a, b, terms);
        total[0] += u;
        total[1] += v;
    }
    total
}

/// [`sums_scalar`] of `terms` over `x` and `g` (equal lengths), for f32 on AVX-512.
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
