//! Stride-1 convolution as one GEMM per image with no im2col matrix ("shifted rows").
//!
//! Copy an image into a zero-padded buffer `[C, Hp, Wp]` (`Hp = H + 2 ph`, `Wp = W + 2 pw`) and
//! number the output positions along the *padded* width: output `(oh, ow)` is column
//! `q = oh * Wp + ow`. Output `(oh, ow)` reads padded input `(oh + i, ow + j)` at tap `(c, i, j)`,
//! which is buffer element `q + c Hp Wp + i Wp + j`: row `(c, i, j)` of the im2col matrix is the
//! buffer itself, shifted by a constant. The GEMM reads those rows in place
//! (`packed_gemm::sgemm_operands`, one offset per row), so the column matrix is never written
//! and read back. The price: the `kw - 1` columns per output row that wrap into the padding
//! (`ow >= OW`) are computed and then dropped, `(kw - 1) / Wp` of the multiply-adds (6% at
//! 32 x 32 and 20% at 8 x 8 for a 3 x 3 kernel with padding 1).
//!
//! The input gradient of a stride-1 convolution is a stride-1 convolution too:
//! `dx = conv(G, W')` with `W'[c, o, i, j] = W[o, c, kh-1-i, kw-1-j]` (channels swapped, both
//! kernel axes flipped) and padding `k - 1 - p`; it runs on the same path instead of `W^T G`
//! (a GEMM with K = C_out, the short side) followed by col2im's scatter-add.
//!
//! **Where it runs** ([`ShiftPlan::new`]): f32 on a CPU with the packed GEMM kernels, stride 1,
//! dilation 1, one group, padding at most `k - 1`, and at most [`MAX_WRAP_WASTE`] of the work
//! wasted on wrapped columns (LeNet-5's unpadded 5 x 5 convolutions on 12 x 12 inputs would waste
//! a third and stay on im2col). Everything else, f64 (the gradient checks) included, runs on
//! im2col + GEMM (`conv_gemm`). The weight gradient always does.
//!
//! **Bits.** The forward output equals im2col + GEMM's bit for bit: each element is the same FMA
//! sequence over the same K order in the same `KC` blocks, by the same micro-kernels (tested). The
//! input gradient sums over `(o, i, j)` in one FMA chain instead of over `o` in the GEMM and then
//! over taps in col2im, so it rounds differently from the im2col path, but it is a function of the
//! shapes alone: each image's gradient depends on nothing else, whatever the thread count.

use crate::kernels::conv_problem::ConvProblem;
use crate::kernels::im2col::Window;
use crate::kernels::microkernel::Isa;
use crate::kernels::packed_gemm::{self, Operand, Strided};

/// The shifted path is used when at most this fraction of its multiply-adds go to wrapped
/// columns, `(kw - 1) / Wp`, in both the forward and the input-gradient geometry. Measured (A/B,
/// interleaved, 5 runs, fastest / median, Sapphire-Rapids-class Xeon): LeNet-5's step with its
/// conv2 (5 x 5 on 12 x 12, no padding: a third wasted) shifted too went from 36.0 / 39.7 to
/// 39.3 / 41.7 ms on 1 thread and 21.1 / 27.8 to 28.3 / 28.4 ms on 2, so it stays on im2col;
/// its conv1 (1/7 wasted) and ResNet-20's 3 x 3 layers (1/17 to 1/5) gain.
pub const MAX_WRAP_WASTE: f64 = 0.25;

/// One stride-1 convolution of `channels`-channel images by an `m x (channels kh kw)` weight
/// matrix, on the shifted-row GEMM.
#[derive(Clone, Debug)]
pub struct ShiftConv {
    isa: Isa,
    channels: usize,
    in_hw: [usize; 2],
    pad: [usize; 2],
    out_hw: [usize; 2],
    /// Padded width `Wp` and plane `Hp Wp`.
    padded_w: usize,
    padded_plane: usize,
    /// Row `(c, i, j)` of the virtual im2col matrix starts at this buffer offset.
    offsets: Vec<isize>,
    /// GEMM columns: output rows `0..OH` at stride `Wp`, the last one cut at `OW`.
    cols: usize,
    /// Padded image plus the slack the last vector loads read past the last row.
    buffer_len: usize,
}

/// The forward pass and the input gradient of one convolution on the shifted path.
pub struct ShiftPlan {
    pub forward: ShiftConv,
    /// Convolves the output gradient (as a `C_out`-channel image) into the input gradient.
    pub input_grad: ShiftConv,
}

impl ShiftPlan {
    /// The plan for `p`, or `None` when the shifted path does not apply (see the module
    /// documentation). A function of the shapes and the CPU's instruction set only.
    pub fn new(p: &ConvProblem) -> Option<ShiftPlan> {
        let isa = packed_gemm::isa()?;
        let win: &Window = &p.win;
        let fits = p.groups == 1
            && win.stride == [1, 1]
            && win.dilation == [1, 1]
            && (0..2).all(|a| win.padding[a] < win.kernel[a]);
        if !fits {
            return None;
        }
        let flipped_pad = [0, 1].map(|a| win.kernel[a] - 1 - win.padding[a]);
        let forward = ShiftConv::new(isa, p.in_channels, win.in_hw, win.kernel, win.padding);
        let input_grad = ShiftConv::new(isa, p.out_channels, win.out_hw, win.kernel, flipped_pad);
        debug_assert_eq!((forward.out_hw, input_grad.out_hw), (win.out_hw, win.in_hw));
        let cheap =
            |s: &ShiftConv| (win.kernel[1] - 1) as f64 <= MAX_WRAP_WASTE * s.padded_w as f64;
        (cheap(&forward) && cheap(&input_grad)).then_some(ShiftPlan {
            forward,
            input_grad,
        })
    }
}

impl ShiftConv {
    fn new(
        isa: Isa,
        channels: usize,
        in_hw: [usize; 2],
        kernel: [usize; 2],
        pad: [usize; 2],
    ) -> Self {
        let [kh, kw] = kernel;
        let padded = [0, 1].map(|a| in_hw[a] + 2 * pad[a]);
        let out_hw = [0, 1].map(|a| padded[a] + 1 - kernel[a]);
        let (padded_w, padded_plane) = (padded[1], padded[0] * padded[1]);
        let mut offsets = Vec::with_capacity(channels * kh * kw);
        for c in 0..channels {
            for i in 0..kh {
                for j in 0..kw {
                    offsets.push((c * padded_plane + i * padded_w + j) as isize);
                }
            }
        }
        let cols = (out_hw[0] - 1) * padded_w + out_hw[1];
        let last_row = *offsets.last().expect("at least one tap") as usize;
        ShiftConv {
            isa,
            channels,
            in_hw,
            pad,
            out_hw,
            padded_w,
            padded_plane,
            offsets,
            cols,
            buffer_len: (channels * padded_plane).max(last_row + cols.next_multiple_of(16)),
        }
    }

    /// The convolution (see `run`) of consecutive images: `x` holds whole `channels x H x W` images and
    /// `out` as many `m x OH x OW` ones. The scratch is allocated once for all of them.
    pub fn run_images(&self, x: &[f32], weight: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let m = weight.len() / self.offsets.len();
        let (in_len, out_len) = (
            self.channels * self.in_hw[0] * self.in_hw[1],
            m * self.out_hw[0] * self.out_hw[1],
        );
        assert_eq!(
            x.len() / in_len,
            out.len() / out_len,
            "shift_conv: image counts"
        );
        // The padding is never written, so one zeroed buffer serves every image.
        let mut padded = vec![0.0; self.buffer_len];
        let mut scratch = vec![0.0; m * self.cols];
        for (x, out) in x.chunks_exact(in_len).zip(out.chunks_exact_mut(out_len)) {
            self.run(x, weight, bias, &mut padded, &mut scratch, out);
        }
    }

    /// Copies a `channels x H x W` image into the interior of the padded buffer.
    ///
    /// Row by row; for the common widths with a row copy of fixed length, which compiles to a
    /// few vector moves: `copy_from_slice` of a run-time length calls `memmove` once per row,
    /// and at ResNet-20's 8- to 32-float rows that call cost about as much as the copy (this
    /// function was 4.3% of the 2-thread ResNet-20 step, AMD EPYC Zen 4, before the change).
    fn pad_image(&self, x: &[f32], padded: &mut [f32]) {
        match self.in_hw[1] {
            8 => self.pad_rows::<8>(x, padded),
            16 => self.pad_rows::<16>(x, padded),
            32 => self.pad_rows::<32>(x, padded),
            _ => self.pad_rows::<0>(x, padded),
        }
    }

    /// [`Self::pad_image`] with rows of `W` floats (`W = 0`: any width, `copy_from_slice`).
    #[inline(always)]
    fn pad_rows<const W: usize>(&self, x: &[f32], padded: &mut [f32]) {
        let [h, w] = self.in_hw;
        let (ph, pw) = (self.pad[0], self.pad[1]);
        for (c, plane) in x.chunks_exact(h * w).enumerate() {
            for (r, row) in plane.chunks_exact(w).enumerate() {
                let at = c * self.padded_plane + (r + ph) * self.padded_w + pw;
                let dst = &mut padded[at..at + w];
                if W == 0 {
                    dst.copy_from_slice(row);
                } else {
                    let dst: &mut [f32; W] = dst.try_into().expect("W is the row width");
                    *dst = *<&[f32; W]>::try_from(row).expect("W is the row width");
                }
            }
        }
    }

    /// Adds the weight gradient of consecutive images onto `dw` (`m x (channels kh kw)`, the
    /// weight's layout): `dw[r, (c kh + i) kw + j] += sum_{oh, ow} g[r, oh, ow] x[c, oh+i-ph,
    /// ow+j-pw]`, image after image. Per image it is the GEMM `dW^T += X G_w^T` whose A rows are
    /// the shifted rows of the padded image and `G_w` is `g` spread along the padded width, zero
    /// in the wrapped columns (so they add nothing).
    ///
    /// `dW^T` is accumulated in a row-major `k x m` buffer and added onto `dw` once at the end:
    /// written straight into `dw` (whose `dW^T` columns are contiguous) every tile of every image
    /// was stored through a gather per tile column, 6% of the 2-thread ResNet-20 step (AMD EPYC
    /// Zen 4). From a zero `dw`, as the convolution's backward passes, the bits are the same.
    pub fn weight_grad_images(&self, x: &[f32], g: &[f32], dw: &mut [f32]) {
        let k = self.offsets.len();
        let m = dw.len() / k;
        let [oh, ow] = self.out_hw;
        let in_len = self.channels * self.in_hw[0] * self.in_hw[1];
        assert!(
            m >= 1 && dw.len() == m * k && x.len() / in_len == g.len() / (m * oh * ow),
            "shift_conv: weight gradient sizes"
        );
        let mut padded = vec![0.0; self.buffer_len];
        // Only the valid columns are ever written: the wrapped ones stay zero.
        let mut spread = vec![0.0; m * self.cols];
        let mut dw_t = vec![0.0f32; k * m];
        for (x, g) in x.chunks_exact(in_len).zip(g.chunks_exact(m * oh * ow)) {
            self.pad_image(x, &mut padded);
            for (dst, src) in spread
                .chunks_exact_mut(self.cols)
                .zip(g.chunks_exact(oh * ow))
            {
                for (d, s) in dst.chunks_mut(self.padded_w).zip(src.chunks_exact(ow)) {
                    d[..ow].copy_from_slice(s);
                }
            }
            let a = Operand::Shifted {
                base: padded.as_ptr(),
                offsets: &self.offsets,
            };
            let b = Operand::Strided(Strided {
                ptr: spread.as_ptr(),
                rs: 1,
                cs: self.cols as isize,
            });
            // SAFETY: row r of A (offsets[r] .. + cols) lies inside `padded`; B is the cols x m
            // transpose of `spread`; C = dW^T is the k x m row-major `dw_t`, aliasing neither;
            // the ISA was detected on this CPU.
            unsafe {
                packed_gemm::sgemm_operands(
                    self.isa,
                    k,
                    self.cols,
                    m,
                    1.0,
                    a,
                    b,
                    1.0,
                    dw_t.as_mut_ptr(),
                    m as isize,
                    1,
                )
            };
        }
        for (r, row) in dw_t.chunks_exact(m).enumerate() {
            for (o, &v) in row.iter().enumerate() {
                dw[o * k + r] += v;
            }
        }
    }

    /// `out[r, oh, ow] = bias[r] + sum_{c, i, j} weight[r, (c kh + i) kw + j] x[c, oh+i-ph, ow+j-pw]`
    /// for one `channels x H x W` image `x` and `m` weight rows, into `out` (`m x OH x OW`).
    /// `padded` is zero wherever the image is not copied; `scratch` holds `m x cols`.
    fn run(
        &self,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        padded: &mut [f32],
        scratch: &mut [f32],
        out: &mut [f32],
    ) {
        let [h, w] = self.in_hw;
        let [oh, ow] = self.out_hw;
        let k = self.offsets.len();
        let m = weight.len() / k;
        assert!(
            x.len() == self.channels * h * w
                && weight.len() == m * k
                && m >= 1
                && padded.len() == self.buffer_len
                && scratch.len() == m * self.cols
                && out.len() == m * oh * ow
                && bias.is_none_or(|b| b.len() == m),
            "shift_conv: buffer sizes"
        );
        self.pad_image(x, padded);
        let a = Operand::Strided(Strided {
            ptr: weight.as_ptr(),
            rs: k as isize,
            cs: 1,
        });
        let b = Operand::Shifted {
            base: padded.as_ptr(),
            offsets: &self.offsets,
        };
        // SAFETY: `weight` is m x k; every row `offsets[p] + 0 .. cols` rounded up to 16 lies
        // inside `padded` (`buffer_len`); `scratch` is m x cols and aliases neither; the ISA
        // was detected on this CPU.
        unsafe {
            packed_gemm::sgemm_operands(
                self.isa,
                m,
                k,
                self.cols,
                1.0,
                a,
                b,
                0.0,
                scratch.as_mut_ptr(),
                self.cols as isize,
                1,
            )
        };
        // Keep the first OW of every Wp columns (the rest wrapped into the padding).
        for (r, (dst, src)) in out
            .chunks_exact_mut(oh * ow)
            .zip(scratch.chunks_exact(self.cols))
            .enumerate()
        {
            let b = bias.map_or(0.0, |b| b[r]);
            for (d, s) in dst.chunks_exact_mut(ow).zip(src.chunks(self.padded_w)) {
                for (d, &s) in d.iter_mut().zip(&s[..ow]) {
                    *d = s + b;
                }
            }
        }
    }
}

/// `W'[c, o, i, j] = W[o, c, kh-1-i, kw-1-j]`: the weight of the input gradient's convolution.
pub fn flipped_weight(
    w: &[f32],
    out_channels: usize,
    in_channels: usize,
    kernel: [usize; 2],
) -> Vec<f32> {
    let [kh, kw] = kernel;
    assert_eq!(
        w.len(),
        out_channels * in_channels * kh * kw,
        "flipped_weight: length"
    );
    let mut flipped = vec![0.0; w.len()];
    for o in 0..out_channels {
        for c in 0..in_channels {
            for i in 0..kh {
                for j in 0..kw {
                    let from = ((o * in_channels + c) * kh + kh - 1 - i) * kw + kw - 1 - j;
                    flipped[((c * out_channels + o) * kh + i) * kw + j] = w[from];
                }
            }
        }
    }
    flipped
}

#[cfg(test)]
#[path = "shift_conv_tests.rs"]
mod tests;
