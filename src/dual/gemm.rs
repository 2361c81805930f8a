//! The GEMM of [`Dual64`]: `matrixmultiply` has none, so each operand is split into real and
//! tangent `f64` planes and three `dgemm`s run: `C = A B` has `re = Aʳ Bʳ` and
//! `eps = Aʳ Bᵋ + Aᵋ Bʳ`. A plane of zero tangents skips its product (data have no tangent).
//! The planes keep each operand's memory order (a transposed view stays column-major), so the
//! split reads memory in sequence: on LeNet-5 this took one `H v` from 340 to 290 ms.

use num_traits::Zero;

use super::Dual64;

/// A matrix shape and strides, in elements.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl Layout {
    pub(super) fn new(rows: usize, cols: usize, rs: isize, cs: isize) -> Layout {
        Layout { rows, cols, rs, cs }
    }

    /// The same shape stored densely in the same order as `self` (column-major if `self` is,
    /// else row-major), so that copying between the two reads and writes memory in sequence.
    fn dense(self) -> Layout {
        if self.cs.unsigned_abs() > self.rs.unsigned_abs() {
            Layout {
                rs: 1,
                cs: self.rows as isize,
                ..self
            }
        } else {
            Layout {
                rs: self.cols as isize,
                cs: 1,
                ..self
            }
        }
    }

    /// Element offsets in the order of [`Layout::dense`].
    fn offsets(self) -> impl Iterator<Item = isize> {
        let column_major = self.cs.unsigned_abs() > self.rs.unsigned_abs();
        let (outer, inner, os, is) = if column_major {
            (self.cols, self.rows, self.cs, self.rs)
        } else {
            (self.rows, self.cols, self.rs, self.cs)
        };
        (0..outer as isize).flat_map(move |o| (0..inner as isize).map(move |i| o * os + i * is))
    }
}

/// The real and tangent parts of a dual matrix as two dense `f64` planes in `layout.dense()`.
struct Planes {
    re: Vec<f64>,
    eps: Vec<f64>,
    /// Whether any tangent is non-zero (if not, its products are skipped).
    has_tangent: bool,
    layout: Layout,
}

impl Planes {
    /// # Safety
    /// `p` and `layout` must describe a valid matrix.
    unsafe fn split(p: *const Dual64, layout: Layout) -> Planes {
        let len = layout.rows * layout.cols;
        let (mut re, mut eps) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for offset in layout.offsets() {
            // SAFETY: every offset is inside the matrix the caller describes.
            let x = unsafe { *p.offset(offset) };
            re.push(x.re);
            eps.push(x.eps);
        }
        let has_tangent = eps.iter().any(|&e| e != 0.0);
        Planes {
            re,
            eps,
            has_tangent,
            layout: layout.dense(),
        }
    }
}

/// `C <- alpha A B + beta C`, each matrix given by its pointer and layout.
///
/// # Safety
/// As `matrixmultiply::dgemm`: the layouts describe valid `m x k`, `k x n` and `m x n` matrices
/// and `c` aliases neither `a` nor `b`. With `beta = 0`, C is not read (it may hold garbage).
pub(super) unsafe fn dual_gemm(
    alpha: Dual64,
    (a, la): (*const Dual64, Layout),
    (b, lb): (*const Dual64, Layout),
    beta: Dual64,
    (c, lc): (*mut Dual64, Layout),
) {
    let (m, k, n) = (la.rows, la.cols, lb.cols);
    // SAFETY: the caller guarantees valid matrices.
    let (a, b) = unsafe { (Planes::split(a, la), Planes::split(b, lb)) };
    // The product's planes are laid out like C, so the final pass over C is sequential.
    let out = lc.dense();
    let mut re = vec![0.0; m * n];
    let mut eps = vec![0.0; m * n];
    let dgemm = |x: &[f64], y: &[f64], beta: f64, into: &mut [f64]| {
        let (x_l, y_l) = (a.layout, b.layout);
        // SAFETY: dense planes of the sizes and strides given; `into` aliases neither input.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                x.as_ptr(),
                x_l.rs,
                x_l.cs,
                y.as_ptr(),
                y_l.rs,
                y_l.cs,
                beta,
                into.as_mut_ptr(),
                out.rs,
                out.cs,
            )
        }
    };
    dgemm(&a.re, &b.re, 0.0, &mut re);
    if b.has_tangent {
        dgemm(&a.re, &b.eps, 0.0, &mut eps);
    }
    if a.has_tangent {
        dgemm(&a.eps, &b.re, 1.0, &mut eps);
    }
    // matrixmultiply's rule: with beta = 0, C is not read (it may hold garbage).
    let read_c = !beta.is_zero();
    for ((offset, &re), &eps) in lc.offsets().zip(&re).zip(&eps) {
        let product = alpha * Dual64::new(re, eps);
        // SAFETY: every offset is inside the m x n matrix C the caller describes.
        let cij = unsafe { &mut *c.offset(offset) };
        *cij = if read_c {
            product + beta * *cij
        } else {
            product
        };
    }
}
