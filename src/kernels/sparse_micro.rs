//! The two inner loops every sparse kernel is built from, compiled three times (AVX-512, AVX2+FMA,
//! portable) and chosen by the CPU at run time.
//!
//! Both walk a list of nonzeros `k`, each a weight `w_k` and an offset `o_k` into a source array,
//! and touch `LANES`-wide blocks of contiguous elements ("lanes": the batch of a linear layer, a
//! row-major output plane of a convolution):
//!
//! - [`gather_accumulate`]: `out[t] = sum_k w_k * src[base + o_k * stride + t]` (forward and input
//!   gradient: one output row is a weighted sum of source rows). The accumulators of a register
//!   tile of `T` lanes stay in registers while the nonzeros stream past, so each nonzero costs
//!   `T / 16` vector loads and FMAs and no store.
//! - [`dot_accumulate`]: `partial[k][l] += sum_c g[c*LANES + l] * src[base + o_k * stride + c*LANES + l]`
//!   (weight gradient at the nonzeros only: one dot product per nonzero, kept as `LANES` lane
//!   partial sums so no horizontal reduction is paid per call; [`reduce_lanes`] finishes it).
//!
//! **Determinism.** Every output element of `gather_accumulate` sums its nonzeros in list order,
//! whatever the register tile; every lane of `dot_accumulate` sums its blocks in order and
//! [`reduce_lanes`] adds the lanes in a fixed tree. So results do not depend on the tile size, the
//! code path or the thread count; only the rounding of a fused multiply-add differs between the
//! FMA paths and the portable one (as it does inside `matrixmultiply`).
//!
//! **Why no intrinsics.** The bodies are plain Rust on fixed-size arrays; inside a function
//! compiled with `#[target_feature(enable = "avx512f")]` LLVM turns a `[f32; 128]` accumulator
//! tile into eight zmm registers and `mul_add` into `vfmadd231ps`. One generic body serves f32
//! (training) and f64 (gradient checks). The portable path multiplies and adds separately, since a
//! software `fma` call would be an order of magnitude slower.

use std::mem::MaybeUninit;

use crate::float::Float;

/// Width of a lane block: every vector axis is padded to a multiple of it. Sixteen f32 are one
/// AVX-512 register (two AVX2 registers); fixing it (rather than the register width) keeps the
/// weight-gradient lane partials, and so the rounding, the same on every code path.
pub const LANES: usize = 16;

/// `x` rounded up to a multiple of [`LANES`].
pub fn round_up_lanes(x: usize) -> usize {
    x.div_ceil(LANES) * LANES
}

/// Multiply-add as the code path does it.
trait MulAdd {
    fn mul_add<F: Float>(a: F, b: F, c: F) -> F;
}

/// Fused (one rounding), for CPUs with FMA.
struct Fused;
/// Separate multiply and add, for the portable path.
struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add<F: Float>(a: F, b: F, c: F) -> F {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add<F: Float>(a: F, b: F, c: F) -> F {
        a * b + c
    }
}

/// `out[t] = sum_k values[k] * src[base + offsets[k] * stride + t]` for `t < out.len()`, a
/// multiple of [`LANES`]. Panics (bounds) if a source row runs past `src`.
pub fn gather_accumulate<F: Float>(
    values: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    out: &mut [F],
) {
    assert_eq!(values.len(), offsets.len(), "gather_accumulate: entries");
    assert!(out.len().is_multiple_of(LANES), "gather_accumulate: lanes");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features `gather_avx512` is compiled for.
            return unsafe { gather_avx512(values, offsets, stride, src, base, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { gather_avx2(values, offsets, stride, src, base, out) };
        }
    }
    gather_body::<F, Separate, 32>(values, offsets, stride, src, base, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn gather_avx512<F: Float>(
    values: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    out: &mut [F],
) {
    // 128 f32 lanes = 8 zmm accumulators (16 for f64) of the 32 registers.
    gather_body::<F, Fused, 128>(values, offsets, stride, src, base, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gather_avx2<F: Float>(
    values: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    out: &mut [F],
) {
    // 64 f32 lanes = 8 ymm accumulators of the 16 registers.
    gather_body::<F, Fused, 64>(values, offsets, stride, src, base, out);
}

/// Tiles of `T` lanes, then one narrower tile for the remainder.
#[inline(always)]
fn gather_body<F: Float, M: MulAdd, const T: usize>(
    values: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    out: &mut [F],
) {
    let mut tiles = out.chunks_exact_mut(T);
    let mut start = base;
    for tile in &mut tiles {
        gather_tile::<F, M, T>(values, offsets, stride, src, start, tile);
        start += T;
    }
    // The remainder as one tile of its own width (a plane of 80 lanes is one 64 + one 16 tile
    // when T = 64, one 80-lane tile when T = 128): each tile walks the nonzeros once.
    let rest = tiles.into_remainder();
    macro_rules! rest_tile {
        ($($w:literal)*) => {
            match rest.len() {
                0 => {}
                $($w if $w < T => gather_tile::<F, M, $w>(values, offsets, stride, src, start, rest),)*
                _ => unreachable!("remainder is a multiple of LANES below T"),
            }
        };
    }
    rest_tile!(16 32 48 64 80 96 112);
}

#[inline(always)]
fn gather_tile<F: Float, M: MulAdd, const T: usize>(
    values: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    start: usize,
    out: &mut [F],
) {
    let mut acc = [F::zero(); T];
    for (&w, &o) in values.iter().zip(offsets) {
        let at = start + o as usize * stride;
        let row: &[F; T] = src[at..at + T].try_into().expect("T elements");
        for l in 0..T {
            acc[l] = M::mul_add(w, row[l], acc[l]);
        }
    }
    out.copy_from_slice(&acc);
}

/// `partials[k][l] += sum_c g[c*LANES + l] * src[base + offsets[k] * stride + c*LANES + l]`, `g`
/// a multiple of [`LANES`] long. Blocks are summed in order `c = 0, 1, ...` into each partial.
pub fn dot_accumulate<F: Float>(
    g: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    partials: &mut [[F; LANES]],
) {
    assert_eq!(offsets.len(), partials.len(), "dot_accumulate: entries");
    assert!(g.len().is_multiple_of(LANES), "dot_accumulate: lanes");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features `dot_avx512` is compiled for.
            return unsafe { dot_avx512(g, offsets, stride, src, base, partials) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { dot_avx2(g, offsets, stride, src, base, partials) };
        }
    }
    dot_body::<F, Separate, 32>(g, offsets, stride, src, base, partials);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn dot_avx512<F: Float>(
    g: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    partials: &mut [[F; LANES]],
) {
    dot_body::<F, Fused, 128>(g, offsets, stride, src, base, partials);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2<F: Float>(
    g: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    partials: &mut [[F; LANES]],
) {
    dot_body::<F, Fused, 64>(g, offsets, stride, src, base, partials);
}

/// `g` is held in registers `T` lanes at a time while the nonzeros stream past.
#[inline(always)]
fn dot_body<F: Float, M: MulAdd, const T: usize>(
    g: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    partials: &mut [[F; LANES]],
) {
    let mut tiles = g.chunks_exact(T);
    let mut start = base;
    for tile in &mut tiles {
        let tile: &[F; T] = tile.try_into().expect("T elements");
        dot_tile::<F, M, T>(tile, offsets, stride, src, start, partials);
        start += T;
    }
    let rest = tiles.remainder();
    macro_rules! rest_tile {
        ($($w:literal)*) => {
            match rest.len() {
                0 => {}
                $($w if $w < T => {
                    let rest: &[F; $w] = rest.try_into().expect("remainder width");
                    dot_tile::<F, M, $w>(rest, offsets, stride, src, start, partials)
                })*
                _ => unreachable!("remainder is a multiple of LANES below T"),
            }
        };
    }
    rest_tile!(16 32 48 64 80 96 112);
}

#[inline(always)]
fn dot_tile<F: Float, M: MulAdd, const T: usize>(
    g: &[F; T],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    start: usize,
    partials: &mut [[F; LANES]],
) {
    for (&o, partial) in offsets.iter().zip(partials.iter_mut()) {
        let at = start + o as usize * stride;
        let row: &[F; T] = src[at..at + T].try_into().expect("T elements");
        let mut p = *partial;
        for c in 0..T / LANES {
            for l in 0..LANES {
                p[l] = M::mul_add(g[c * LANES + l], row[c * LANES + l], p[l]);
            }
        }
        *partial = p;
    }
}

/// `out[k]` = the dot product of `g` with source row `offsets[k]`: [`dot_accumulate`] into zero
/// partials, then [`reduce_lanes`] (the same bits), for a single pass over `g`. The partials of
/// `DOT_BLOCK` (64) entries at a time live on the stack, so no `LANES`-per-entry buffer is
/// allocated and zeroed (it was 64 bytes per kept weight: 750 KB for LeNet-300's fc1 at 95%).
pub fn dot_reduce<F: Float>(
    g: &[F],
    offsets: &[u32],
    stride: usize,
    src: &[F],
    base: usize,
    out: &mut [F],
) {
    assert_eq!(offsets.len(), out.len(), "dot_reduce: entries");
    let mut block = [const { MaybeUninit::<[F; LANES]>::uninit() }; DOT_BLOCK];
    for (offsets, out) in offsets.chunks(DOT_BLOCK).zip(out.chunks_mut(DOT_BLOCK)) {
        // Only the partials used are zeroed: a 98%-sparse fc1 row has about 16 entries, and
        // zeroing all 4 KiB per call was 2% of its forward+backward on 2 threads.
        let used = &mut block[..offsets.len()];
        for p in used.iter_mut() {
            p.write([F::zero(); LANES]);
        }
        // SAFETY: every element of `used` was just written; `MaybeUninit<T>` has the layout of `T`.
        let partials =
            unsafe { &mut *(used as *mut [MaybeUninit<[F; LANES]>] as *mut [[F; LANES]]) };
        dot_accumulate(g, offsets, stride, src, base, partials);
        for (o, partial) in out.iter_mut().zip(partials.iter()) {
            *o = reduce_lanes(partial);
        }
    }
}

/// Entries per stack block of [`dot_reduce`] (4 KiB of f32 partials, in L1).
const DOT_BLOCK: usize = 64;

/// The sum of a lane partial in a fixed pairwise tree (independent of the code path).
pub fn reduce_lanes<F: Float>(partial: &[F; LANES]) -> F {
    let mut v = *partial;
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            v[l] += v[l + width];
        }
    }
    v[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dot_reduce` gives the bits of `dot_accumulate` into zero partials then `reduce_lanes`,
    /// across stack-block edges (63, 64, 65, 200 entries) and for one tile, several tiles, and a
    /// remainder tile of `g`.
    #[test]
    fn dot_reduce_has_the_bits_of_accumulate_then_reduce() {
        let wave = |i: usize, salt: f32| ((i as f32) * 0.731 + salt).sin();
        for g_len in [16, 128, 144, 272] {
            let rows = 211;
            let src: Vec<f32> = (0..rows * g_len).map(|i| wave(i, 1.0)).collect();
            let g: Vec<f32> = (0..g_len).map(|i| wave(i, 2.0)).collect();
            for entries in [0, 1, 63, 64, 65, 200] {
                let offsets: Vec<u32> = (0..entries).map(|k| ((k * 37) % rows) as u32).collect();
                let mut partials = vec![[0.0f32; LANES]; entries];
                dot_accumulate(&g, &offsets, g_len, &src, 0, &mut partials);
                let want: Vec<u32> = partials.iter().map(|p| reduce_lanes(p).to_bits()).collect();
                let mut got = vec![f32::NAN; entries];
                dot_reduce(&g, &offsets, g_len, &src, 0, &mut got);
                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "g {g_len}, {entries} entries");
            }
        }
    }
}
