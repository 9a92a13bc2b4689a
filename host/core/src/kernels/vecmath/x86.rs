//! AVX2 + FMA versions of [`super`]'s kernels.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::Segments;

pub(super) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// `exp` of eight lanes: Cephes' range reduction (`x = n·ln2 + r`, ln2 in two parts) and
/// degree-5 polynomial, within 2 ulp of the true value. Inputs below −87.3 (where f32 turns
/// subnormal) give exactly 0, so −∞ padding drops out of a softmax; inputs above 88 give
/// exp(88), large and finite.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let low = _mm256_set1_ps(-87.3);
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, low);
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0)), low);
    let n = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
    }
    y = _mm256_fmadd_ps(
        y,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    // 2^n through the exponent bits; the clamps keep n within −126..=127.
    let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(pow2)), keep)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

/// [`super::attend`] for a head of `8 · C` values, kept in `C` registers. Always succeeds
/// (returns true).
///
/// # Safety
/// AVX2 and FMA are present; `q` and `out` hold `8 · C` values; every segment's keys and
/// values are whole rows of `8 · C` values, equally many; `scores` holds their count rounded
/// up to a multiple of 8, filled with −∞.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn attend<const C: usize>(
    q: &[f32],
    segs: &Segments<'_>,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) -> bool {
    let hd = 8 * C;
    // SAFETY (whole body): the caller guarantees the row shapes above, so every pointer
    // offset below stays inside its segment, `q`, `out` or `scores`.
    unsafe {
        let mut qv = [_mm256_setzero_ps(); C];
        for (c, v) in qv.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(q.as_ptr().add(8 * c));
        }
        let sc = _mm_set1_ps(scale);
        let mut j = 0;
        for (keys, _) in segs {
            let n = keys.len() / hd;
            let kp = keys.as_ptr();
            // Four positions at a time: four independent FMA chains, one shared reduction.
            let mut i = 0;
            while i + 4 <= n {
                let mut a = [_mm256_setzero_ps(); 4];
                for (c, qc) in qv.iter().enumerate() {
                    for (t, at) in a.iter_mut().enumerate() {
                        let k = _mm256_loadu_ps(kp.add((i + t) * hd + 8 * c));
                        *at = _mm256_fmadd_ps(*qc, k, *at);
                    }
                }
                let s = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
                let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
                _mm_storeu_ps(scores.as_mut_ptr().add(j + i), _mm_mul_ps(s, sc));
                i += 4;
            }
            while i < n {
                let mut a = _mm256_setzero_ps();
                for (c, qc) in qv.iter().enumerate() {
                    a = _mm256_fmadd_ps(*qc, _mm256_loadu_ps(kp.add(i * hd + 8 * c)), a);
                }
                scores[j + i] = hsum(a) * scale;
                i += 1;
            }
            j += n;
        }

        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for s in scores.chunks_exact(8) {
            m = _mm256_max_ps(m, _mm256_loadu_ps(s.as_ptr()));
        }
        let m = _mm256_set1_ps(hmax(m));
        let mut sum = _mm256_setzero_ps();
        for s in scores.chunks_exact_mut(8) {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s.as_ptr()), m));
            _mm256_storeu_ps(s.as_mut_ptr(), e);
            sum = _mm256_add_ps(sum, e);
        }

        let mut acc = [_mm256_setzero_ps(); C];
        let mut j = 0;
        for (_, values) in segs {
            let vp = values.as_ptr();
            for i in 0..values.len() / hd {
                let p = _mm256_set1_ps(scores[j + i]);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(p, _mm256_loadu_ps(vp.add(i * hd + 8 * c)), *a);
                }
            }
            j += values.len() / hd;
        }
        let inv = _mm256_set1_ps(1.0 / hsum(sum));
        for (c, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), _mm256_mul_ps(*a, inv));
        }
    }
    true
}

/// [`super::silu_mul`].
///
/// # Safety
/// AVX2 and FMA are present; `gate` and `up` have the same length.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let one = _mm256_set1_ps(1.0);
    let lane = |g: __m256, u: __m256| {
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u)
    };
    let mut gs = gate.chunks_exact_mut(8);
    let mut us = up.chunks_exact(8);
    for (g, u) in (&mut gs).zip(&mut us) {
        // SAFETY: both chunks are 8 values.
        unsafe {
            let r = lane(_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(u.as_ptr()));
            _mm256_storeu_ps(g.as_mut_ptr(), r);
        }
    }
    // The tail through a padded vector, so every element takes the same arithmetic.
    let (gt, ut) = (gs.into_remainder(), us.remainder());
    if !gt.is_empty() {
        let (mut g8, mut u8) = ([0f32; 8], [0f32; 8]);
        g8[..gt.len()].copy_from_slice(gt);
        u8[..ut.len()].copy_from_slice(ut);
        // SAFETY: both arrays are 8 values.
        unsafe {
            let r = lane(_mm256_loadu_ps(g8.as_ptr()), _mm256_loadu_ps(u8.as_ptr()));
            _mm256_storeu_ps(g8.as_mut_ptr(), r);
        }
        gt.copy_from_slice(&g8[..gt.len()]);
    }
}

/// [`super::gelu`].
///
/// # Safety
/// AVX2 and FMA are present.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn gelu(x: &mut [f32]) {
    use super::erf::{A, P};
    let one = _mm256_set1_ps(1.0);
    let half = _mm256_set1_ps(0.5);
    let sign_bit = _mm256_set1_ps(-0.0);
    let lane = |v: __m256| {
        // erf(z) for z = v/√2, on |z| with the sign put back.
        let z = _mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let sign = _mm256_and_ps(z, sign_bit);
        let a = _mm256_andnot_ps(sign_bit, z);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(P), a, one));
        let mut poly = _mm256_set1_ps(A[4]);
        for &c in A[..4].iter().rev() {
            poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(c));
        }
        poly = _mm256_mul_ps(poly, t);
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
        let erf = _mm256_or_ps(_mm256_fnmadd_ps(poly, e, one), sign);
        _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf))
    };
    let mut xs = x.chunks_exact_mut(8);
    for c in &mut xs {
        // SAFETY: the chunk is 8 values.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), lane(_mm256_loadu_ps(c.as_ptr()))) };
    }
    let tail = xs.into_remainder();
    if !tail.is_empty() {
        let mut v8 = [0f32; 8];
        v8[..tail.len()].copy_from_slice(tail);
        // SAFETY: the array is 8 values.
        unsafe { _mm256_storeu_ps(v8.as_mut_ptr(), lane(_mm256_loadu_ps(v8.as_ptr()))) };
        tail.copy_from_slice(&v8[..tail.len()]);
    }
}
