//! Tests of `packed_gemm` (a separate file to keep the kernel file short).

use super::*;

/// A deterministic irregular fill in (-1, 1).
pub(crate) fn filled(len: usize, salt: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f32) * 0.618 + salt).sin())
        .collect()
}

fn run(isa: Isa, m: usize, k: usize, n: usize, a: &[f32], b: &[f32], trans_b: bool) -> Vec<f32> {
    let mut c = filled(m * n, 3.0);
    let a = Strided {
        ptr: a.as_ptr(),
        rs: k as isize,
        cs: 1,
    };
    let b = if trans_b {
        Strided {
            ptr: b.as_ptr(),
            rs: 1,
            cs: k as isize,
        }
    } else {
        Strided {
            ptr: b.as_ptr(),
            rs: n as isize,
            cs: 1,
        }
    };
    // SAFETY: the buffers hold the matrices; `isa` is checked by the caller.
    unsafe { sgemm(isa, m, k, n, 0.75, a, b, 1.0, c.as_mut_ptr(), n as isize, 1) };
    c
}

/// Every element is a sequential FMA sum in fixed K blocks on both instruction sets, so
/// AVX-512 and AVX2 agree bit for bit (ragged tiles, K across blocks, in-place and packed
/// operands, the transposed-product path), and both are the product.
#[test]
fn avx512_and_avx2_give_the_same_bits() {
    if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma")) {
        return; // nothing to compare on this CPU
    }
    for (m, k, n) in [
        (1, 1, 1),
        (7, 300, 50),
        (16, 600, 144),
        (70, 33, 200),
        (130, 520, 17),
    ] {
        for trans_b in [false, true] {
            let (a, b) = (filled(m * k, 1.0), filled(k * n, 2.0));
            let wide = run(Isa::Avx512, m, k, n, &a, &b, trans_b);
            let narrow = run(Isa::Avx2, m, k, n, &a, &b, trans_b);
            let c0 = filled(m * n, 3.0);
            for i in 0..m {
                for j in 0..n {
                    let at = i * n + j;
                    assert_eq!(
                        wide[at].to_bits(),
                        narrow[at].to_bits(),
                        "{m}x{k}x{n} ({i}, {j})"
                    );
                    let exact: f64 = (0..k)
                        .map(|p| {
                            let bv = if trans_b { b[j * k + p] } else { b[p * n + j] };
                            f64::from(a[i * k + p]) * f64::from(bv)
                        })
                        .sum();
                    let want = 0.75 * exact + f64::from(c0[at]);
                    assert!(
                        (f64::from(wide[at]) - want).abs() < 1e-3,
                        "{m}x{k}x{n}: {} vs {want}",
                        wide[at]
                    );
                }
            }
        }
    }
}
