//! Loops compiled for the widest vector instruction set the CPU has, chosen at run time.
//!
//! The crate is built for baseline x86-64 (SSE2), where the compiler's vectoriser often gives up
//! on a loop with a select (a masked optimiser update stayed scalar and branchy: a third of a
//! 95%-sparse LeNet-300 step). [`widest`] runs a [`Kernel`] inside a function compiled with AVX-512
//! or AVX2 enabled; its `run` is inlined there and compiled with those instructions.
//!
//! Same bits on every CPU: only for loops of elementwise IEEE operations. Rust never contracts a
//! multiply and an add into an FMA nor reorders a float sum on its own, so the vector widths
//! compute exactly what the scalar loop does.

/// A loop to compile for the widest vectors: [`Kernel::run`] must be `#[inline(always)]`, so it
/// is inlined into the feature-enabled functions (a closure would not be).
pub trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for AVX-512 (F and VL), else AVX2, else the baseline, whichever the
/// CPU has. VL lets the 128- and 256-bit instructions of a loop (its f32 halves of f64 work, its
/// tails) use all 32 vector registers: with F alone, the 32-lane f64 sum of STR's backward
/// spilled an accumulator to the stack on every iteration.
#[inline(always)]
pub fn widest<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has AVX-512F and AVX-512VL.
            return unsafe { avx512(kernel) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { avx2(kernel) };
        }
    }
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}
