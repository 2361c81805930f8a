//! Training-time augmentation: random crop from a zero-padded image, then a random horizontal flip
//! (the CIFAR recipe of He et al. 2016, "Deep Residual Learning", sec. 4.2; torchvision's
//! `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()`).
//!
//! The draw for sample `i` in epoch `e` comes from its own generator keyed by `(seed, e, i)`, so
//! it does not depend on which batch the sample lands in, on the batch size, or on the thread
//! that processes it: a resumed or re-batched run augments every sample exactly as before.

use ndarray::{Array3, ArrayView3};
use rand::{Rng as _, SeedableRng};

use crate::rng::Rng;

/// Tag mixed into every augmentation key, so these generators never coincide with a generator
/// keyed the same way for another purpose.
const AUGMENT_STREAM: u64 = 0x4155_474d; // "AUGM"

/// Random crop + flip settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding added on every side before cropping back to the original size.
    pub pad: usize,
    /// Flip horizontally with probability 1/2.
    pub flip: bool,
    pub seed: u64,
}

/// The augmentation drawn for one sample: crop offsets into the padded image and the flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropFlip {
    /// Row offset of the crop in the padded image, in `0..=2 * pad` (`pad` = centred crop).
    pub dy: usize,
    /// Column offset of the crop in the padded image, in `0..=2 * pad`.
    pub dx: usize,
    pub flip: bool,
}

impl Augment {
    /// The standard CIFAR augmentation: pad 4, crop back to 32x32, flip with p = 0.5.
    pub fn cifar(seed: u64) -> Self {
        Augment {
            pad: 4,
            flip: true,
            seed,
        }
    }

    /// The crop and flip of sample `index` in `epoch`: a pure function of `(seed, epoch, index)`.
    pub fn draw(&self, epoch: usize, index: usize) -> CropFlip {
        // A 256-bit ChaCha key made of the four words, so distinct (seed, epoch, index) never
        // share a generator (no hashing, no collisions).
        let mut key = [0u8; 32];
        for (chunk, word) in
            key.chunks_exact_mut(8)
                .zip([self.seed, epoch as u64, index as u64, AUGMENT_STREAM])
        {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let mut rng = Rng::from_seed(key);
        let dy = rng.random_range(0..=2 * self.pad);
        let dx = rng.random_range(0..=2 * self.pad);
        let flip = self.flip && rng.random_bool(0.5);
        CropFlip { dy, dx, flip }
    }
}

impl CropFlip {
    /// `image` `[C, H, W]` zero-padded by `pad` on every side, cropped to `H x W` at `(dy, dx)`,
    /// then mirrored left-right if `flip`:
    /// `out[c, y, x] = padded[c, y + dy, x' + dx]` with `x' = W - 1 - x` when flipped, else `x`,
    /// and `padded[c, py, px] = image[c, py - pad, px - pad]` inside the image, 0 outside.
    /// Padding is with byte 0 before normalisation, as torchvision pads the PIL image.
    pub fn apply(&self, image: ArrayView3<u8>, pad: usize) -> Array3<u8> {
        let (c, h, w) = image.dim();
        assert!(
            self.dy <= 2 * pad && self.dx <= 2 * pad,
            "crop offset {self:?} is outside the padding {pad}"
        );
        let image = image.as_standard_layout();
        let image = image.as_slice().expect("standard layout");
        let mut out = Array3::<u8>::zeros((c, h, w));
        let out_slice = out.as_slice_mut().expect("fresh arrays are contiguous");
        // Source columns x + dx - pad must lie in [0, w): x in [pad - dx, w + pad - dx).
        let first = pad.saturating_sub(self.dx);
        let end = (w + pad).saturating_sub(self.dx).min(w);
        if first >= end {
            return out; // the window lies entirely in the padding
        }
        let src_first = first + self.dx - pad;
        let len = end - first;
        for ch in 0..c {
            for y in 0..h {
                let Some(sy) = (y + self.dy).checked_sub(pad).filter(|&sy| sy < h) else {
                    continue; // a padding row: stays 0
                };
                let src = &image[(ch * h + sy) * w + src_first..][..len];
                let row = &mut out_slice[(ch * h + y) * w..][..w];
                if self.flip {
                    // Unflipped column x goes to w - 1 - x.
                    row[w - end..w - first]
                        .iter_mut()
                        .rev()
                        .zip(src)
                        .for_each(|(d, &p)| *d = p);
                } else {
                    row[first..end].copy_from_slice(src);
                }
            }
        }
        out
    }
}
