//! The panel kernel in AVX2, for machines without AVX-512 VNNI: each 64-byte word of a block
//! is two 256-bit halves of eight rows, taken one half at a time (sixteen registers hold four
//! activation rows' accumulators, not eight). `vpmaddubsw` multiplies u8 by i8 and sums
//! pairs into i16, where it saturates past ±32767; `vpmaddwd` by ones then widens to i32.
//!
//! Affine panels keep values up to 31 and signed ones of up to 5 bits store `q + 16` or less,
//! so four words' pairs stay below 4·2·31·127 in i16 and the bytes go in as they are (a
//! signed panel's offset taken back in integers, as in the VNNI kernel). Q8_0 and Q6_K store
//! `q + 128` and `q + 32`, whose sums would overflow: they take llama.cpp's sign trick
//! instead, `|q| · (x · sign q)`, at most 2·128·127 a pair, widened every word, with no
//! correction (the products are already signed).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::act::RowSlices;
use super::{Acts, BLOCK_BYTES, LANES, TILE_ROWS, Tile};

/// Activation rows per call of the kernel: two registers each (an i32 block sum, an f32
/// total) beside the weights, the flipped weights and a broadcast word.
const ROWS: usize = 4;

/// AVX2 and FMA.
pub(super) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// The largest offset of a signed panel whose bytes (`q + offset < 2·offset`) go in as they
/// are: up to 31, like every affine panel's values.
const DIRECT_OFFSET: i32 = 16;

macro_rules! by_rows {
    ($h:literal, $a:literal, $s:literal, $n:expr, $t:expr, $acts:expr, $i0:expr, $out:expr) => {
        match $n {
            1 => kernel::<1, $h, $a, $s>($t, $acts, $i0, $out),
            2 => kernel::<2, $h, $a, $s>($t, $acts, $i0, $out),
            3 => kernel::<3, $h, $a, $s>($t, $acts, $i0, $out),
            _ => kernel::<ROWS, $h, $a, $s>($t, $acts, $i0, $out),
        }
    };
}

/// Rows `i0..i0 + n` (1 ≤ n ≤ 8) of `acts` times the group, into `out[..n]`.
///
/// # Safety
/// [`available`] holds; the tile's slices are whole blocks of one group and `acts` has rows
/// `i0..i0 + n` of as many blocks.
pub(super) unsafe fn run(
    t: &Tile,
    acts: &Acts,
    i0: usize,
    n: usize,
    out: &mut [[f32; LANES]; TILE_ROWS],
) {
    let affine = !t.mins.is_empty();
    let sign = !affine && t.offset > DIRECT_OFFSET;
    for first in (0..n).step_by(ROWS) {
        let m = ROWS.min(n - first);
        let dst = &mut out[first..];
        // SAFETY: as the caller promised; `dst` has at least `m` rows.
        unsafe {
            match (t.halves, affine, sign) {
                (false, true, _) => by_rows!(false, true, false, m, t, acts, i0 + first, dst),
                (true, true, _) => by_rows!(true, true, false, m, t, acts, i0 + first, dst),
                (false, false, false) => {
                    by_rows!(false, false, false, m, t, acts, i0 + first, dst)
                }
                (true, false, false) => by_rows!(true, false, false, m, t, acts, i0 + first, dst),
                (false, false, true) => by_rows!(false, false, true, m, t, acts, i0 + first, dst),
                (true, false, true) => by_rows!(true, false, true, m, t, acts, i0 + first, dst),
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const M: usize, const H: bool, const A: bool, const S: bool>(
    t: &Tile,
    acts: &Acts,
    i0: usize,
    out: &mut [[f32; LANES]],
) {
    let rows: [_; M] = std::array::from_fn(|i| acts.row(i0 + i));
    let bpr = t.quants.len() / BLOCK_BYTES;
    let store = |out: &mut [[f32; LANES]], half: usize, acc: [__m256; M]| {
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: `o[8 · half..]` holds eight f32.
            unsafe { _mm256_storeu_ps(o[8 * half..8 * half + 8].as_mut_ptr(), a) };
        }
    };
    if M <= 2 {
        // Few rows: both halves of a block before the next, so the weights stream through
        // once (half after half, a decode step measured slower than on f32 activations).
        let mut acc = [[_mm256_setzero_ps(); M]; 2];
        for b in 0..bpr {
            for (half, acc) in acc.iter_mut().enumerate() {
                block::<M, H, A, S>(t, &rows, b, half, acc);
            }
        }
        for (half, acc) in acc.into_iter().enumerate() {
            store(out, half, acc);
        }
    } else {
        for half in 0..2 {
            let mut acc = [_mm256_setzero_ps(); M];
            for b in 0..bpr {
                block::<M, H, A, S>(t, &rows, b, half, &mut acc);
            }
            store(out, half, acc);
        }
    }
}

/// Block `b` of rows `8 · half..8 · half + 8` times `rows`, added to `acc`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn block<const M: usize, const H: bool, const A: bool, const S: bool>(
    t: &Tile,
    rows: &[RowSlices<'_>; M],
    b: usize,
    half: usize,
    acc: &mut [__m256; M],
) {
    let lane0 = 8 * half;
    let pb = LANES * (1 + usize::from(H));
    let ones = _mm256_set1_epi16(1);
    // The stored offset, as a byte (128 wraps to −128: subtracting it flips the top bit).
    let offset = _mm256_set1_epi8(t.offset as u8 as i8);
    // Words per scale: four with a scale per 16 values, all eight otherwise.
    let span = if H { 4 } else { 8 };
    let qb = &t.quants[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
    for h in 0..8 / span {
        let at = b * pb + h * LANES + lane0;
        // SAFETY: `at + 8 <= (b + 1) * pb`: eight of this block's scales.
        let d = unsafe { _mm256_loadu_ps(t.scales[at..at + 8].as_ptr()) };
        // A direct signed panel's offset, taken back in integers: `−offset · Σx`.
        let mut p: [__m256i; M] = std::array::from_fn(|i| match A || S {
            true => _mm256_setzero_si256(),
            false => {
                let is = rows[i].2[b];
                let sum = if H { is[h] } else { is[0] + is[1] };
                _mm256_set1_epi32(-t.offset * sum)
            }
        });
        // Direct bytes are at most 31: four words' pairs (4·2·31·127) still fit an i16, so
        // they are summed there and widened once.
        let mut s16 = [_mm256_setzero_si256(); M];
        for j in h * span..(h + 1) * span {
            let off = (j * LANES + lane0) * 4;
            // SAFETY: `off + 32 <= BLOCK_BYTES`: word `j` of rows `lane0..lane0 + 8`.
            let w = unsafe { _mm256_loadu_si256(qb[off..off + 32].as_ptr().cast()) };
            let signed = _mm256_sub_epi8(w, offset);
            let magnitude = _mm256_abs_epi8(signed);
            for (i, r) in rows.iter().enumerate() {
                let x = word(&r.0[b], j);
                if S {
                    let pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(x, signed));
                    p[i] = _mm256_add_epi32(p[i], _mm256_madd_epi16(pairs, ones));
                } else {
                    s16[i] = _mm256_add_epi16(s16[i], _mm256_maddubs_epi16(w, x));
                    if j % 4 == 3 {
                        p[i] = _mm256_add_epi32(p[i], _mm256_madd_epi16(s16[i], ones));
                        s16[i] = _mm256_setzero_si256();
                    }
                }
            }
        }
        let mn = match A {
            // SAFETY: as `d`.
            true => unsafe { _mm256_loadu_ps(t.mins[at..at + 8].as_ptr()) },
            false => _mm256_setzero_ps(),
        };
        for (i, r) in rows.iter().enumerate() {
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(r.1[b]));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[i]), scale, acc[i]);
            if A {
                let s = match H {
                    true => r.3[b][h],
                    false => r.3[b][0] + r.3[b][1],
                };
                acc[i] = _mm256_fmadd_ps(mn, _mm256_set1_ps(s), acc[i]);
            }
        }
    }
}

/// Activation word `j` (values `4j..4j + 4`) of a block, in every lane.
#[inline]
#[target_feature(enable = "avx2")]
fn word(q: &[i8; 32], j: usize) -> __m256i {
    _mm256_set1_epi32(super::act::word(q, j))
}
