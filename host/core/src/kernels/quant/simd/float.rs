//! The x86-64 kernels of unquantized rows (f32, and f16 or bf16 converted in registers) of
//! [`super::super::QMatrix`]: whole blocks of 32 through the same register tile as the
//! quantized kernels.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{hsum, rows_times_block};

/// One f32 weight row times `M` activation rows: whole blocks of 32 through the same
/// register tile as the quantized kernels, the row's last `cols % 32` values one by one.
///
/// # Safety
/// The CPU has AVX2 and FMA; `x` holds `M` rows of `w.len()` values, `dst` `M` values.
#[target_feature(enable = "avx2,fma")]
unsafe fn f32_row<const M: usize>(w: &[f32], x: &[f32], dst: &mut [f32]) {
    let cols = w.len();
    let whole = cols / 32;
    let mut acc = [_mm256_setzero_ps(); M];
    for b in 0..whole {
        // SAFETY: block `b` < cols / 32, so its 32 values are inside `w`.
        let wv = unsafe {
            let p = w.as_ptr().add(b * 32);
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        };
        // SAFETY: `x` holds M rows of `cols` values and block `b` is inside them.
        unsafe { rows_times_block(&wv, x, cols, b, &mut acc) };
    }
    for (i, (out, a)) in dst.iter_mut().zip(acc).enumerate() {
        let tail = (whole * 32..cols)
            .map(|k| w[k] * x[i * cols + k])
            .sum::<f32>();
        *out = hsum(a) + tail;
    }
}

/// Whether the CPU converts f16 in hardware (F16C), for the 16-bit float kernels.
pub(in crate::kernels::quant) fn f16c_available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("f16c"))
}

/// Eight 16-bit floats (f16, or bf16 when `brain`) at `p` as f32.
///
/// # Safety
/// `p` points at 8 readable values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn half8(p: *const u16, brain: bool) -> __m256 {
    // SAFETY: the caller guarantees 8 values at `p`.
    let v = unsafe { _mm_loadu_si128(p.cast()) };
    if brain {
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16))
    } else {
        _mm256_cvtph_ps(v)
    }
}

/// One row of 16-bit floats times `M` activation rows, as [`f32_row`].
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x` holds `M` rows of `w.len()` values, `dst` `M` values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half_row<const M: usize>(w: &[u16], brain: bool, x: &[f32], dst: &mut [f32]) {
    let cols = w.len();
    let whole = cols / 32;
    let mut acc = [_mm256_setzero_ps(); M];
    for b in 0..whole {
        // SAFETY: block `b` < cols / 32, so its 32 values are inside `w`.
        let wv = unsafe {
            let p = w.as_ptr().add(b * 32);
            [
                half8(p, brain),
                half8(p.add(8), brain),
                half8(p.add(16), brain),
                half8(p.add(24), brain),
            ]
        };
        // SAFETY: `x` holds M rows of `cols` values and block `b` is inside them.
        unsafe { rows_times_block(&wv, x, cols, b, &mut acc) };
    }
    for (i, (out, a)) in dst.iter_mut().zip(acc).enumerate() {
        let tail = (whole * 32..cols)
            .map(|k| super::super::half_to_f32(w[k], brain) * x[i * cols + k])
            .sum::<f32>();
        *out = hsum(a) + tail;
    }
}

/// A row of 16-bit floats to f32.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `out` has room for `w.len()` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::kernels::quant) unsafe fn half_to_f32s(w: &[u16], brain: bool, out: &mut [f32]) {
    let whole = w.len() / 8;
    for k in 0..whole {
        // SAFETY: 8 values at `8k` are inside `w` and `out`.
        unsafe {
            _mm256_storeu_ps(
                out.as_mut_ptr().add(8 * k),
                half8(w.as_ptr().add(8 * k), brain),
            )
        };
    }
    for k in whole * 8..w.len() {
        out[k] = super::super::half_to_f32(w[k], brain);
    }
}

/// [`half_row`] for `n` (1 to 8) rows.
///
/// # Safety
/// As [`half_row`] with `M = n`.
pub(in crate::kernels::quant) unsafe fn half_rows(
    n: usize,
    w: &[u16],
    brain: bool,
    x: &[f32],
    dst: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe { by_rows!(n, half_row(w, brain, x, dst)) }
}

/// [`f32_row`] for `n` (1 to 8) rows.
///
/// # Safety
/// As [`f32_row`] with `M = n`.
pub(in crate::kernels::quant) unsafe fn f32_rows(n: usize, w: &[f32], x: &[f32], dst: &mut [f32]) {
    // SAFETY: forwarded from the caller.
    unsafe { by_rows!(n, f32_row(w, x, dst)) }
}
