//! The x86-64 kernels of [`super::QMatrix`]: AVX2 + FMA, chosen at run time
//! ([`available`]). Each block is dequantized to f32 in registers and multiplied with f32
//! activations, so results are f32 math on the dequantized weights.

use std::arch::x86_64::*;
use std::sync::OnceLock;

mod tiles;
pub(super) use tiles::{
    WIDE_ALLOWED, half_tile, q4_1_tile, q8_0_tile, q8x16_tile, u8_affine_tile, u8_affine16_tile,
    wide_available,
};

pub(super) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let hi = _mm256_extractf128_ps(v, 1);
    let lo = _mm256_castps256_ps128(v);
    let s = _mm_add_ps(hi, lo);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Eight u8 → eight f32.
#[target_feature(enable = "avx2,fma")]
fn widen_u8(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
}

/// Eight i8 → eight f32.
#[target_feature(enable = "avx2,fma")]
fn widen_i8(v: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

/// A Q4_1 block's 32 quantized values (0–15), in order, as four vectors of f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn q4_1_values(q: &[u8; 16]) -> [__m256; 4] {
    let mask = _mm_set1_epi8(0x0f);
    // SAFETY: `q` is 16 bytes.
    let q = unsafe { _mm_loadu_si128(q.as_ptr().cast()) };
    let lo = _mm_and_si128(q, mask);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    [
        widen_u8(lo),
        widen_u8(_mm_srli_si128(lo, 8)),
        widen_u8(hi),
        widen_u8(_mm_srli_si128(hi, 8)),
    ]
}

/// A Q8_0 block's 32 quantized values, in order, as four vectors of f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn q8_0_values(q: &[i8; 32]) -> [__m256; 4] {
    // SAFETY: `q` is 32 bytes.
    let (q0, q1) = unsafe {
        (
            _mm_loadu_si128(q.as_ptr().cast()),
            _mm_loadu_si128(q.as_ptr().add(16).cast()),
        )
    };
    [
        widen_i8(q0),
        widen_i8(_mm_srli_si128(q0, 8)),
        widen_i8(q1),
        widen_i8(_mm_srli_si128(q1, 8)),
    ]
}

/// A block of 32 unsigned bytes, in order, as four vectors of f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn u8_values(q: &[u8; 32]) -> [__m256; 4] {
    // SAFETY: `q` is 32 bytes.
    let (q0, q1) = unsafe {
        (
            _mm_loadu_si128(q.as_ptr().cast()),
            _mm_loadu_si128(q.as_ptr().add(16).cast()),
        )
    };
    [
        widen_u8(q0),
        widen_u8(_mm_srli_si128(q0, 8)),
        widen_u8(q1),
        widen_u8(_mm_srli_si128(q1, 8)),
    ]
}

/// Q4_1's dequantization of a block's values: `d·q + m`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn affine(mut v: [__m256; 4], d: f32, m: f32) -> [__m256; 4] {
    let (d, m) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
    for x in &mut v {
        *x = _mm256_fmadd_ps(*x, d, m);
    }
    v
}

/// Q8_0's dequantization of a block's values: `d·q`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn scaled(mut v: [__m256; 4], d: f32) -> [__m256; 4] {
    let d = _mm256_set1_ps(d);
    for x in &mut v {
        *x = _mm256_mul_ps(*x, d);
    }
    v
}

/// U8Affine16's dequantization of a block's values: `d₀·q + m₀` for the first 16, `d₁·q + m₁`
/// for the rest (`s = [d₀, m₀, d₁, m₁]`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn affine_halves(mut v: [__m256; 4], s: [f32; 4]) -> [__m256; 4] {
    for (k, x) in v.iter_mut().enumerate() {
        let h = 2 * (k / 2);
        *x = _mm256_fmadd_ps(*x, _mm256_set1_ps(s[h]), _mm256_set1_ps(s[h + 1]));
    }
    v
}

/// Q8x16's dequantization of a block's values: the first 16 times `d[0]`, the rest times
/// `d[1]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn scaled_halves(mut v: [__m256; 4], d: [f32; 2]) -> [__m256; 4] {
    let (d0, d1) = (_mm256_set1_ps(d[0]), _mm256_set1_ps(d[1]));
    v[0] = _mm256_mul_ps(v[0], d0);
    v[1] = _mm256_mul_ps(v[1], d0);
    v[2] = _mm256_mul_ps(v[2], d1);
    v[3] = _mm256_mul_ps(v[3], d1);
    v
}

/// Every activation row's 32 values of block `b` times the block's dequantized weights `w`,
/// into the row's accumulator. Weight vector after weight vector, row after row: each
/// accumulator's dependent FMAs are `M` instructions apart, which hides their latency.
///
/// # Safety
/// `x` holds `M` rows of `cols` values, and `b · 32 + 32 ≤ cols`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_times_block<const M: usize>(
    w: &[__m256; 4],
    x: &[f32],
    cols: usize,
    b: usize,
    acc: &mut [__m256; M],
) {
    let p = x.as_ptr();
    for (k, wk) in w.iter().enumerate() {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: row `i` < M has `cols` values; `b · 32 + 8k + 8 ≤ cols`.
            let v = unsafe { _mm256_loadu_ps(p.add(i * cols + b * 32 + 8 * k)) };
            *a = _mm256_fmadd_ps(*wk, v, *a);
        }
    }
}

/// Four FMAs of a widened block with 32 values of `x` starting at `at`, scaled by `d`, into
/// `acc`.
///
/// # Safety
/// `x` has at least `at + 32` values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn scaled_block(w: &[__m256; 4], x: &[f32], at: usize, d: __m256, acc: __m256) -> __m256 {
    // SAFETY: the caller guarantees 32 readable values from `at`.
    unsafe {
        let p = x.as_ptr().add(at);
        let mut b = _mm256_mul_ps(w[0], _mm256_loadu_ps(p));
        b = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(p.add(8)), b);
        b = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(p.add(16)), b);
        b = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(p.add(24)), b);
        _mm256_fmadd_ps(d, b, acc)
    }
}

/// One Q4_1 weight row times `M` (few) activation rows with the scales applied after the
/// block's products: `Σ_b d_b·(q_b·x_b) + m_b·Σ x_b`. Fewer instructions per block than
/// dequantizing first, which only pays off when many rows share the dequantized block.
///
/// # Safety
/// As [`q4_1`], and `sums` holds `M` rows of `scales.len()` block sums of `x`.
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_1_scaled<const M: usize>(
    scales: &[[f32; 2]],
    quants: &[[u8; 16]],
    x: &[f32],
    sums: &[f32],
    dst: &mut [f32],
) {
    let bpr = scales.len();
    let cols = bpr * 32;
    let mut acc = [_mm256_setzero_ps(); M];
    let mut offset = [0f32; M];
    for (b, (&[d, mn], q)) in scales.iter().zip(quants).enumerate() {
        let w = q4_1_values(q);
        let d = _mm256_set1_ps(d);
        for (i, (a, o)) in acc.iter_mut().zip(offset.iter_mut()).enumerate() {
            // SAFETY: row i has `cols` values, so 32 from `b · 32`.
            *a = unsafe { scaled_block(&w, x, i * cols + b * 32, d, *a) };
            *o += mn * sums[i * bpr + b];
        }
    }
    for ((out, a), o) in dst.iter_mut().zip(acc).zip(offset) {
        *out = hsum(a) + o;
    }
}

/// [`q8_0`] with the scale applied after the block's products, as [`q4_1_scaled`].
///
/// # Safety
/// As [`q4_1`].
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_0_scaled<const M: usize>(
    scales: &[f32],
    quants: &[[i8; 32]],
    x: &[f32],
    dst: &mut [f32],
) {
    let cols = scales.len() * 32;
    let mut acc = [_mm256_setzero_ps(); M];
    for (b, (&d, q)) in scales.iter().zip(quants).enumerate() {
        let w = q8_0_values(q);
        let d = _mm256_set1_ps(d);
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: row i has `cols` values.
            *a = unsafe { scaled_block(&w, x, i * cols + b * 32, d, *a) };
        }
    }
    for (out, a) in dst.iter_mut().zip(acc) {
        *out = hsum(a);
    }
}

/// A block's 32 values into `dst`.
///
/// # Safety
/// `dst` holds at least 32 values.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(v: [__m256; 4], dst: &mut [f32]) {
    for (k, x) in v.iter().enumerate() {
        // SAFETY: 8 values at `8k` < 32.
        unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(8 * k), *x) };
    }
}

/// Rows up to which the scale-after kernels win (`cargo run --release --example kernels`).
pub(super) const SCALED_MAX_ROWS: usize = 2;

/// [`q4_1_scaled`] for `n` (1 to [`SCALED_MAX_ROWS`]) rows.
///
/// # Safety
/// As [`q4_1_scaled`] with `M = n`.
pub(super) unsafe fn q4_1_scaled_rows(
    n: usize,
    scales: &[[f32; 2]],
    quants: &[[u8; 16]],
    x: &[f32],
    sums: &[f32],
    dst: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match n {
            1 => q4_1_scaled::<1>(scales, quants, x, sums, dst),
            _ => q4_1_scaled::<2>(scales, quants, x, sums, dst),
        }
    }
}

/// [`q8_0_scaled`] for `n` (1 to [`SCALED_MAX_ROWS`]) rows.
///
/// # Safety
/// As [`q8_0_scaled`] with `M = n`.
pub(super) unsafe fn q8_0_scaled_rows(
    n: usize,
    scales: &[f32],
    quants: &[[i8; 32]],
    x: &[f32],
    dst: &mut [f32],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match n {
            1 => q8_0_scaled::<1>(scales, quants, x, dst),
            _ => q8_0_scaled::<2>(scales, quants, x, dst),
        }
    }
}

/// `$kernel::<n>(args)` for a run-time row count `n` of 1 to 8: the kernels take it as a
/// constant so their accumulators stay in registers.
macro_rules! by_rows {
    ($n:expr, $kernel:ident($($arg:expr),*)) => {
        match $n {
            1 => $kernel::<1>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            _ => $kernel::<8>($($arg),*),
        }
    };
}

/// The dequantize-first kernels of a block form, whose block `(scale, quants)` becomes its 32
/// f32 weights by `$values`:
/// - `$kernel::<M>`: one weight row times `M` activation rows, each block dequantized into
///   registers once and used for every row (the accumulators stay in registers because `M` is
///   a constant). Safety: the CPU has AVX2 and FMA; `x` holds `M` rows of `32 · scales.len()`
///   values, `dst` `M` values;
/// - `$rows`: `$kernel` for a run-time row count of 1 to 8 (same safety with `M = n`);
/// - `$dequant`: the blocks as f32 into `out` (safety: AVX2 and FMA; `out` has room for
///   `32 · scales.len()` values).
macro_rules! dequantizing_kernels {
    ($kernel:ident, $rows:ident, $dequant:ident, $scale:ty, $quant:ty, |$s:ident, $q:ident| $values:expr) => {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $kernel<const M: usize>(
            scales: &[$scale],
            quants: &[$quant],
            x: &[f32],
            dst: &mut [f32],
        ) {
            let cols = scales.len() * 32;
            let mut acc = [_mm256_setzero_ps(); M];
            for (b, (&$s, $q)) in scales.iter().zip(quants).enumerate() {
                let w = $values;
                // SAFETY: `x` holds M rows of `cols` values and block `b` is inside them.
                unsafe { rows_times_block(&w, x, cols, b, &mut acc) };
            }
            for (out, a) in dst.iter_mut().zip(acc) {
                *out = hsum(a);
            }
        }

        pub(super) unsafe fn $rows(
            n: usize,
            scales: &[$scale],
            quants: &[$quant],
            x: &[f32],
            dst: &mut [f32],
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { by_rows!(n, $kernel(scales, quants, x, dst)) }
        }

        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn $dequant(scales: &[$scale], quants: &[$quant], out: &mut [f32]) {
            for ((&$s, $q), dst) in scales.iter().zip(quants).zip(out.chunks_exact_mut(32)) {
                // SAFETY: `dst` is 32 values.
                unsafe { store($values, dst) };
            }
        }
    };
}

// Q4_1: `d·q + m`, nibbles. Q8_0: `d·q`, signed bytes. Q8x16: `d·q` with a scale per 16
// values. U8Affine: `d·q + m`, unsigned bytes; U8Affine16 with `d, m` per 16 values.
dequantizing_kernels!(q4_1, q4_1_rows, dequant_q4_1, [f32; 2], [u8; 16], |s, q| {
    affine(q4_1_values(q), s[0], s[1])
});
dequantizing_kernels!(q8_0, q8_0_rows, dequant_q8_0, f32, [i8; 32], |s, q| scaled(
    q8_0_values(q),
    s
));
dequantizing_kernels!(
    q8x16,
    q8x16_rows,
    dequant_q8x16,
    [f32; 2],
    [i8; 32],
    |s, q| scaled_halves(q8_0_values(q), s)
);
dequantizing_kernels!(
    u8_affine,
    u8_affine_rows,
    dequant_u8_affine,
    [f32; 2],
    [u8; 32],
    |s, q| affine(u8_values(q), s[0], s[1])
);
dequantizing_kernels!(
    u8_affine16,
    u8_affine16_rows,
    dequant_u8_affine16,
    [f32; 4],
    [u8; 32],
    |s, q| affine_halves(u8_values(q), s)
);

mod float;
pub(super) use float::{f16c_available, f32_rows, half_rows, half_to_f32s};
