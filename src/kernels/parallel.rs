//! Elementwise work split over rayon threads once it is large enough to pay for the split, and
//! output buffers zeroed by the threads that fill them.
//!
//! Why: in a training step, everything the main thread does alone (an activation map, a residual
//! add, adding up the gradients of a value used twice, zeroing a fresh output before the
//! parallel kernel writes it) leaves the other threads idle. `perf` of ResNet-20's step on 2
//! threads put 16% of all samples on the main thread alone, mostly in those loops.
//!
//! Determinism: every element is computed by the same expression from the same inputs whichever
//! thread runs it, so the results are bit-identical for every thread count.

use std::mem::MaybeUninit;

use ndarray::Zip;
use rayon::prelude::*;

use crate::float::Float;
use crate::simd::{Kernel, widest};
use crate::tensor::Tensor;

/// Below this many elements an elementwise loop runs on the calling thread: a rayon split costs
/// a few microseconds, a 64 Ki-element map about 20-30 (256 KiB in, 256 KiB out).
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Whether a loop over `len` elements should be split over rayon threads: it is large enough,
/// and there is more than one thread. (With one, a rayon call from outside the pool, e.g. a
/// library user's `main`, would hand the loop to the pool's worker and the data would move
/// between cores: that measured a LeNet-300 step 50% slower. The command line and the benches
/// run inside the pool, `run::flags::on_threads`.)
pub fn worth_splitting(len: usize) -> bool {
    len >= PARALLEL_MIN_ELEMENTS && rayon::current_num_threads() > 1
}

/// Elements per task when a loop over slices is split by hand (`par_chunks`): fixed, so the
/// split never depends on the number of threads.
pub const PARALLEL_CHUNK: usize = 1 << 14;

/// `Zip::from(a).and(b)...map_collect(f)`, split over rayon threads when
/// [`worth_splitting`] the output.
macro_rules! map_collect {
    ($f:expr; $first:expr $(, $rest:expr)* $(,)?) => {{
        let zip = ::ndarray::Zip::from($first)$(.and($rest))*;
        if $crate::kernels::parallel::worth_splitting(zip.size()) {
            zip.par_map_collect($f)
        } else {
            zip.map_collect($f)
        }
    }};
}
pub(crate) use map_collect;

/// `acc += g` elementwise (same shape), split over threads when large.
pub fn add_assign<F: Float>(acc: &mut Tensor<F>, g: &Tensor<F>) {
    // Contiguous operands of one shape (the usual case): the slice loop the elementwise ops use.
    if acc.shape() == g.shape()
        && let (Some(sum), Some(gs)) = (acc.as_slice_mut(), g.as_slice())
    {
        return update_slices(sum, [gs], |a, [b]| a + b);
    }
    let zip = Zip::from(acc).and(g);
    if worth_splitting(zip.size()) {
        zip.par_for_each(|a, &b| *a += b);
    } else {
        zip.for_each(|a, &b| *a += b);
    }
}

/// `a[i] * b[i]` for two slices of one length, as a new vector ([`map_slices`]). A masked
/// weight and its gradient are such products (`Var::mul`).
pub fn product<F: Float>(a: &[F], b: &[F]) -> Vec<F> {
    map_slices([a, b], |[a, b]| a * b)
}

/// `op([s[0][i], s[1][i], ...])` for slices of one length, as a new vector: one loop compiled
/// for the CPU's widest vectors (`simd`: the same bits as the scalar loop, for ops made of
/// elementwise IEEE arithmetic and selects), split over threads in fixed chunks when
/// [`worth_splitting`]. The contiguous path of elementwise ops (`ops::elementwise`), where
/// ndarray's `Zip` calls the closure per element through its generic iteration.
pub fn map_slices<F: Float, const N: usize>(
    slices: [&[F]; N],
    op: impl Fn([F; N]) -> F + Copy + Sync,
) -> Vec<F> {
    let len = slices.first().map_or(0, |s| s.len());
    assert!(
        slices.iter().all(|s| s.len() == len),
        "map_slices: operands of different lengths"
    );
    let mut out: Vec<F> = Vec::with_capacity(len);
    in_chunks(&mut out.spare_capacity_mut()[..len], |start, out| {
        let inputs = slices.map(|s| &s[start..]);
        widest(MapSlices { inputs, out, op })
    });
    // SAFETY: the kernel wrote every element of `0..len`.
    unsafe { out.set_len(len) };
    out
}

/// `body(offset, chunk)` over `target`: in fixed chunks of [`PARALLEL_CHUNK`] over threads when
/// [`worth_splitting`], else as one chunk on the calling thread.
fn in_chunks<T: Send>(target: &mut [T], body: impl Fn(usize, &mut [T]) + Sync) {
    if worth_splitting(target.len()) {
        target
            .par_chunks_mut(PARALLEL_CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| body(i * PARALLEL_CHUNK, chunk));
    } else {
        body(0, target);
    }
}

/// `target[i] = op(target[i], [s[0][i], ...])` in place: [`map_slices`] writing into an
/// operand's own buffer (a gradient an elementwise backward owns; `Tape::record_owned`), the
/// same loop, chunks and bits.
pub fn update_slices<F: Float, const N: usize>(
    target: &mut [F],
    slices: [&[F]; N],
    op: impl Fn(F, [F; N]) -> F + Copy + Sync,
) {
    let len = target.len();
    assert!(
        slices.iter().all(|s| s.len() == len),
        "update_slices: operands of different lengths"
    );
    in_chunks(target, |start, target| {
        let inputs = slices.map(|s| &s[start..]);
        widest(UpdateSlices { target, inputs, op })
    });
}

/// The loop of [`update_slices`] over one chunk (`target`'s length; the inputs may be longer).
struct UpdateSlices<'a, F, O, const N: usize> {
    target: &'a mut [F],
    inputs: [&'a [F]; N],
    op: O,
}

impl<F: Float, O: Fn(F, [F; N]) -> F, const N: usize> Kernel for UpdateSlices<'_, F, O, N> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let n = self.target.len();
        let inputs = self.inputs.map(|s| &s[..n]);
        for (i, t) in self.target.iter_mut().enumerate() {
            *t = (self.op)(*t, std::array::from_fn(|k| inputs[k][i]));
        }
    }
}

/// The loop of [`map_slices`] over one chunk (`out`'s length; the inputs may be longer).
struct MapSlices<'a, F, O, const N: usize> {
    inputs: [&'a [F]; N],
    out: &'a mut [MaybeUninit<F>],
    op: O,
}

impl<F: Float, O: Fn([F; N]) -> F, const N: usize> Kernel for MapSlices<'_, F, O, N> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let n = self.out.len();
        let inputs = self.inputs.map(|s| &s[..n]);
        for (i, out) in self.out.iter_mut().enumerate() {
            out.write((self.op)(std::array::from_fn(|k| inputs[k][i])));
        }
    }
}

/// The elementwise sum of `partials` (each at least `len` long), every element added up in the
/// order the partials are given (a fixed chunk order, so the bits do not depend on the thread
/// count); only the split over output elements is parallel.
pub fn sum_in_order<F: Float>(partials: &[&[F]], len: usize) -> Vec<F> {
    const BLOCK: usize = 4096;
    let mut total = vec![F::zero(); len];
    total
        .par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(block, total)| {
            for partial in partials {
                for (t, &v) in total.iter_mut().zip(&partial[block * BLOCK..]) {
                    *t += v;
                }
            }
        });
    total
}

/// A vector of `len` elements built in consecutive chunks of `chunk` elements (the last may be
/// shorter), in parallel: each chunk is zeroed and then passed to `fill(chunk index, chunk)` on
/// the same thread, while it is still in cache. Returns the vector and `fill`'s results in
/// chunk order.
pub fn par_chunks_zeroed<F: Float, R: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [F]) -> R + Sync + Send,
) -> (Vec<F>, Vec<R>) {
    // SAFETY: `zero` initialises every element of each chunk before `fill` sees it.
    unsafe { par_chunks_written(len, chunk, |index, part| fill(index, zero(part))) }
}

/// [`par_chunks_zeroed`] without the zero fill, for a `fill` that writes every element of its
/// chunk anyway (a transpose, a sparse kernel's output rows).
///
/// # Safety
/// `fill` must initialise every element of the chunk it is given.
pub unsafe fn par_chunks_written<F: Float, R: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<F>]) -> R + Sync + Send,
) -> (Vec<F>, Vec<R>) {
    assert!(chunk > 0, "par_chunks_written: chunk length 0");
    let mut out: Vec<F> = Vec::with_capacity(len);
    let results = out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .map(|(index, part)| fill(index, part))
        .collect();
    // SAFETY: the chunks cover `0..len` and the caller's `fill` initialised each.
    unsafe { out.set_len(len) };
    (out, results)
}

/// Writes zero into every element and returns the now-initialised slice.
fn zero<F: Float>(part: &mut [MaybeUninit<F>]) -> &mut [F] {
    for v in part.iter_mut() {
        v.write(F::zero());
    }
    // SAFETY: every element was just written; `MaybeUninit<F>` has the layout of `F`.
    unsafe { &mut *(part as *mut [MaybeUninit<F>] as *mut [F]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, IxDyn};

    #[test]
    fn chunks_are_filled_in_order_and_cover_the_vector() {
        let check = |part: &[f32]| assert!(part.iter().all(|&x| x == 0.0), "chunk arrives zeroed");
        let written = |i: usize, part: &mut [MaybeUninit<f32>]| {
            for v in part.iter_mut() {
                v.write(i as f32);
            }
            part.len()
        };
        let zeroed = |i: usize, part: &mut [f32]| {
            check(part);
            part.fill(i as f32);
            part.len()
        };
        let lens = [0, 1, 7, 100, 3 * PARALLEL_MIN_ELEMENTS + 5];
        let runs = lens.iter().flat_map(|&len| {
            // SAFETY: `written` writes every element of its chunk.
            let written = unsafe { par_chunks_written(len, 33, written) };
            [par_chunks_zeroed(len, 33, zeroed), written].map(|r| (len, r))
        });
        for (len, (v, sizes)) in runs {
            assert_eq!(v.len(), len);
            assert_eq!(sizes.iter().sum::<usize>(), len);
            for (i, &n) in sizes.iter().enumerate() {
                assert_eq!(n, 33.min(len - i * 33));
                assert!(v[i * 33..i * 33 + n].iter().all(|&x| x == i as f32));
            }
        }
    }

    #[test]
    fn large_and_small_maps_match_the_serial_loop() {
        for len in [10, PARALLEL_MIN_ELEMENTS + 3] {
            let a = Array::from_shape_fn(IxDyn(&[len]), |i| (i[0] as f32 * 0.37).sin());
            let b = a.mapv(|x| x * 1.5 - 0.25);
            let y: Tensor<f32> = map_collect!(|&x: &f32, &z: &f32| x * z + x; &a, &b);
            let expected = Zip::from(&a).and(&b).map_collect(|&x, &z| x * z + x);
            assert_eq!(y, expected);
            let mut acc = a.clone();
            add_assign(&mut acc, &b);
            assert_eq!(acc, &a + &b);
        }
    }
}
