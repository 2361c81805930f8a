//! Inverted dropout (Srivastava et al. 2014).

use rand::RngCore;

use crate::float::Float;
use crate::rng::Rng;
use crate::tape::{Tensor, Var};

impl<'t, F: Float> Var<'t, F> {
    /// Inverted dropout: each element is kept with probability `1 - p` and scaled by
    /// `1 / (1 - p)`, else zeroed; the mask is drawn from `rng` in row-major order, one `u32` per
    /// element. Gradient `mask * scale`. `p = 0` returns `self` unchanged (drawing nothing);
    /// `p = 1` zeroes everything.
    pub fn dropout(self, p: f64, rng: &mut Rng) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "op `dropout`: probability {p} is not in [0, 1]"
        );
        if p == 0.0 {
            return self;
        }
        let x = self.value();
        let scale = if p < 1.0 {
            F::c(1.0 / (1.0 - p))
        } else {
            F::zero()
        };
        // Keep iff a uniform u32 >= p * 2^32: probability 1 - p up to 2^-32.
        let threshold = (p * 4_294_967_296.0).round() as u64;
        let mask = Tensor::<F>::from_shape_simple_fn(x.raw_dim(), || {
            if u64::from(rng.next_u32()) >= threshold {
                scale
            } else {
                F::zero()
            }
        });
        let y = &*x * &mask;
        self.tape()
            .record("dropout", y, &[self], move |g, _| vec![Some(g * &mask)])
    }
}
