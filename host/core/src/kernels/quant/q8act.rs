//! Decode (one activation row) with the row rounded to 8 bits, as llama.cpp does: each block
//! of 32 activations becomes a scale and 32 signed bytes once per matmul, and each weight
//! block is multiplied in integers (`maddubs` then `madd`: 32 products summed into 8 lanes in
//! two instructions), then scaled once. About a third of the instructions per weight of the
//! f32 kernel, which on the machines measured is what bounds decoding (docs/benchmarks.md,
//! "Decode matmul against the memory bound").
//!
//! Opt-in per model: rounding activations costs exactness (each activation is off by up to
//! half its block's step, `max|x|/254`), which the f32 kernels do not. Q4_1 and Q8_0 blocks
//! (and the types re-laid as them: Q4_0, Q4_K, Q5_0) take this path; Q4_1's minimum term uses
//! the exact f32 block sums.

use rayon::prelude::*;

use super::{QMatrix, Values};

/// An activation row rounded to 8 bits, a scale per block of 32.
pub(super) struct Q8Row {
    scales: Vec<f32>,
    quants: Vec<[i8; 32]>,
    /// Each block's exact f32 sum (Q4_1's minimum term).
    sums: Vec<f32>,
}

impl Q8Row {
    /// `x` (a whole number of blocks of 32) rounded: `d = max|x| / 127`, `q = round(x / d)`.
    pub(super) fn new(x: &[f32]) -> Self {
        let n = x.len() / 32;
        let mut row = Q8Row {
            scales: Vec::with_capacity(n),
            quants: Vec::with_capacity(n),
            sums: Vec::with_capacity(n),
        };
        for b in x.chunks_exact(32) {
            let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0i8; 32];
            for (o, v) in q.iter_mut().zip(b) {
                // Rounded half away from zero, as `f32::round`, without its libm call (this
                // runs once per activation per matmul); in -127..=127 by construction of `d`.
                let y = v * id;
                *o = (y + 0.5f32.copysign(y)) as i8;
            }
            row.scales.push(d);
            row.quants.push(q);
            row.sums.push(b.iter().sum());
        }
        row
    }
}

/// Whether `w`'s values have an 8-bit-activation kernel (on this CPU).
pub(super) fn supported(w: &QMatrix) -> bool {
    matches!(w.values, Values::Q4_1 { .. } | Values::Q8_0 { .. })
        && w.cols.is_multiple_of(32)
        && simd_available()
}

fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::simd::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Weight rows per parallel work item, as the f32 kernels take them.
pub(super) fn chunk(cols: usize) -> usize {
    (super::BLOCKS_PER_ITEM / (cols / 32).max(1)).max(super::FUSED_CHUNK)
}

/// `out = w · x` for one activation row `x` rounded to 8 bits, weight rows split across the
/// current pool's threads. The caller checked [`supported`].
pub(super) fn matvec(w: &QMatrix, x: &[f32], out: &mut [f32], chunk: usize) {
    let row = Q8Row::new(x);
    out.par_chunks_mut(chunk).enumerate().for_each(|(c, dst)| {
        crate::kernels::pools::yield_to_live();
        for (k, o) in dst.iter_mut().enumerate() {
            *o = row_dot(w, c * chunk + k, &row);
        }
    });
}

/// Weight row `r` times the rounded row.
fn row_dot(w: &QMatrix, r: usize, x: &Q8Row) -> f32 {
    #[cfg(target_arch = "x86_64")]
    let blocks = r * (w.cols / 32)..(r + 1) * (w.cols / 32);
    match &w.values {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `supported` checked AVX2 and FMA; the slices are whole rows of blocks.
        Values::Q4_1 { scales, quants } => unsafe {
            x86::q4_1(&scales[blocks.clone()], &quants[blocks], x)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Values::Q8_0 { scales, quants } => unsafe {
            x86::q8_0(&scales[blocks.clone()], &quants[blocks], x)
        },
        _ => scalar(w, r, x),
    }
}

/// The same sums in plain Rust: the reference the SIMD kernels are tested against.
pub(super) fn scalar(w: &QMatrix, r: usize, x: &Q8Row) -> f32 {
    let bpr = w.cols / 32;
    let dot = |a: &[u8; 32], signed: bool, q: &[i8; 32]| -> i32 {
        a.iter()
            .zip(q)
            .map(|(&a, &q)| {
                let a = if signed {
                    i32::from(a as i8)
                } else {
                    i32::from(a)
                };
                a * i32::from(q)
            })
            .sum()
    };
    let mut acc = 0f32;
    for b in 0..bpr {
        let (i, xd, xq) = (r * bpr + b, x.scales[b], &x.quants[b]);
        match &w.values {
            Values::Q4_1 { scales, quants } => {
                let mut v = [0u8; 32];
                for (j, &byte) in quants[i].iter().enumerate() {
                    v[j] = byte & 0x0f;
                    v[j + 16] = byte >> 4;
                }
                let [d, m] = scales[i];
                acc += d * xd * dot(&v, false, xq) as f32 + m * x.sums[b];
            }
            Values::Q8_0 { scales, quants } => {
                let v = quants[i].map(|q| q as u8);
                acc += scales[i] * xd * dot(&v, true, xq) as f32;
            }
            _ => {}
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Q8Row;
    use crate::kernels::quant::simd::hsum;

    /// Eight i32 lanes: the 32 products of unsigned `a` and signed `b`, summed in fours.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn products(a: __m256i, b: __m256i) -> __m256 {
        // u8 · i8 pairs fit i16: at most 2 · 15 · 127 for Q4_1, 2 · 128 · 127 for Q8_0.
        let pairs = _mm256_maddubs_epi16(a, b);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// # Safety
    /// `scales`, `quants` and `x` have the same number of blocks.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q4_1(scales: &[[f32; 2]], quants: &[[u8; 16]], x: &Q8Row) -> f32 {
        let mask = _mm_set1_epi8(0x0f);
        // Two accumulators: consecutive blocks do not wait on each other's FMA.
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut offset = 0f32;
        for (b, ((&[d, m], q), xq)) in scales.iter().zip(quants).zip(&x.quants).enumerate() {
            // SAFETY: 16 and 32 readable bytes.
            let (q, xq) = unsafe {
                (
                    _mm_loadu_si128(q.as_ptr().cast()),
                    _mm256_loadu_si256(xq.as_ptr().cast()),
                )
            };
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let p = products(_mm256_set_m128i(hi, lo), xq);
            let s = _mm256_set1_ps(d * x.scales[b]);
            acc[b & 1] = _mm256_fmadd_ps(s, p, acc[b & 1]);
            offset += m * x.sums[b];
        }
        hsum(_mm256_add_ps(acc[0], acc[1])) + offset
    }

    /// # Safety
    /// As [`q4_1`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q8_0(scales: &[f32], quants: &[[i8; 32]], x: &Q8Row) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 2];
        for (b, ((&d, q), xq)) in scales.iter().zip(quants).zip(&x.quants).enumerate() {
            // SAFETY: 32 readable bytes each.
            let (w, xq) = unsafe {
                (
                    _mm256_loadu_si256(q.as_ptr().cast()),
                    _mm256_loadu_si256(xq.as_ptr().cast()),
                )
            };
            // maddubs takes one unsigned side: |w|, and x with w's sign.
            let p = products(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xq, w));
            let s = _mm256_set1_ps(d * x.scales[b]);
            acc[b & 1] = _mm256_fmadd_ps(s, p, acc[b & 1]);
        }
        hsum(_mm256_add_ps(acc[0], acc[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::ggml::GgmlType;

    fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> QMatrix {
        let (per_block, block_bytes) = ty.block();
        let n = rows * cols / per_block * block_bytes;
        let mut s = seed;
        let mut bytes: Vec<u8> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (s >> 16) as u8
            })
            .collect();
        // Sane f16 scales (small, positive) at each block's start.
        for b in bytes.chunks_exact_mut(block_bytes) {
            b[..2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
            if ty == GgmlType::Q4_1 {
                b[2..4].copy_from_slice(&half::f16::from_f32(-0.05).to_bits().to_le_bytes());
            }
        }
        QMatrix::from_blocks(ty, rows, cols, &bytes).unwrap()
    }

    #[test]
    fn the_kernels_match_the_scalar_sums_and_f32_math_within_the_rounding() {
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q5_0,
        ] {
            // 7 rows (odd), 96 columns (three blocks); one block of zeros in x.
            let (rows, cols) = (7, 96);
            let w = matrix(ty, rows, cols, 7);
            assert!(supported(&w) || !simd_available(), "{ty:?}");
            let mut x: Vec<f32> = (0..cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            x[32..64].iter_mut().for_each(|v| *v = 0.0);
            let row = Q8Row::new(&x);
            let mut out = vec![0f32; rows];
            if supported(&w) {
                matvec(&w, &x, &mut out, 3);
            } else {
                (0..rows).for_each(|r| out[r] = scalar(&w, r, &row));
            }
            let mut exact = vec![0f32; rows];
            w.matmul(&x, 1, &mut exact);
            for r in 0..rows {
                let want = scalar(&w, r, &row);
                assert!(
                    (out[r] - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{ty:?} row {r}: {} vs {want}",
                    out[r]
                );
                // Each activation is off by at most half its block's step: the result by
                // at most Σ|w|·step/2.
                let mut bound = 0f32;
                let mut wr = vec![0f32; cols];
                w.dequantize_row(r, &mut wr);
                for (b, xs) in x.chunks_exact(32).enumerate() {
                    let step = xs.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                    bound += wr[b * 32..(b + 1) * 32]
                        .iter()
                        .map(|v| v.abs())
                        .sum::<f32>()
                        * step
                        / 2.0;
                }
                assert!(
                    (out[r] - exact[r]).abs() <= bound * 1.01 + 1e-4,
                    "{ty:?} row {r}: {} vs f32 {}",
                    out[r],
                    exact[r]
                );
            }
        }
    }
}
