//! The panel kernel in AVX-512 VNNI: per block, the sixteen rows' eight words are loaded once
//! and meet up to eight activation rows; each activation word is broadcast to every lane.

use std::arch::x86_64::*;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;

use super::{Acts, BLOCK_BYTES, LANES, TILE_ROWS, Tile};

/// AVX-512 F, BW and VNNI (and not switched off to measure an AVX2-only machine).
pub(super) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }) && crate::kernels::quant::simd::WIDE_ALLOWED.load(Relaxed)
}

macro_rules! by_rows {
    ($h:literal, $a:literal, $n:expr, $t:expr, $acts:expr, $i0:expr, $out:expr) => {
        match $n {
            1 => kernel::<1, $h, $a>($t, $acts, $i0, $out),
            2 => kernel::<2, $h, $a>($t, $acts, $i0, $out),
            3 => kernel::<3, $h, $a>($t, $acts, $i0, $out),
            4 => kernel::<4, $h, $a>($t, $acts, $i0, $out),
            5 => kernel::<5, $h, $a>($t, $acts, $i0, $out),
            6 => kernel::<6, $h, $a>($t, $acts, $i0, $out),
            7 => kernel::<7, $h, $a>($t, $acts, $i0, $out),
            _ => kernel::<TILE_ROWS, $h, $a>($t, $acts, $i0, $out),
        }
    };
}

impl Tile<'_> {
    /// Rows `i0..i0 + n` (1 ≤ n ≤ 8) of `acts` times the group, into `out[..n]`.
    ///
    /// # Safety
    /// [`available`] holds; the slices are whole blocks of one group and `acts` has rows
    /// `i0..i0 + n` of as many blocks.
    pub(super) unsafe fn run(
        &self,
        acts: &Acts,
        i0: usize,
        n: usize,
        out: &mut [[f32; LANES]; TILE_ROWS],
    ) {
        let affine = !self.mins.is_empty();
        // SAFETY: as the caller promised.
        unsafe {
            match (self.halves, affine) {
                (false, false) => by_rows!(false, false, n, self, acts, i0, out),
                (false, true) => by_rows!(false, true, n, self, acts, i0, out),
                (true, false) => by_rows!(true, false, n, self, acts, i0, out),
                (true, true) => by_rows!(true, true, n, self, acts, i0, out),
            }
        }
    }
}

/// Activation word `j` (values `4j..4j + 4`) of a block, in every lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn word(q: &[i8; 32], j: usize) -> __m512i {
    _mm512_set1_epi32(super::act::word(q, j))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel<const M: usize, const H: bool, const A: bool>(
    t: &Tile,
    acts: &Acts,
    i0: usize,
    out: &mut [[f32; LANES]; TILE_ROWS],
) {
    let rows: [_; M] = std::array::from_fn(|i| acts.row(i0 + i));
    let bpr = t.quants.len() / BLOCK_BYTES;
    let pb = LANES * (1 + usize::from(H));
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..bpr {
        let qb = &t.quants[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
        // SAFETY: `qb` holds 8 × 64 bytes.
        let w: [__m512i; 8] =
            std::array::from_fn(|j| unsafe { _mm512_loadu_si512(qb.as_ptr().add(64 * j).cast()) });
        let sb = &t.scales[b * pb..(b + 1) * pb];
        // SAFETY: `sb` holds `pb` (16 or 32) values.
        let d = unsafe {
            [
                _mm512_loadu_ps(sb.as_ptr()),
                _mm512_loadu_ps(sb[pb - LANES..].as_ptr()),
            ]
        };
        let mn = match A {
            true => {
                let mb = &t.mins[b * pb..(b + 1) * pb];
                // SAFETY: as `sb`.
                unsafe {
                    [
                        _mm512_loadu_ps(mb.as_ptr()),
                        _mm512_loadu_ps(mb[pb - LANES..].as_ptr()),
                    ]
                }
            }
            false => [_mm512_setzero_ps(); 2],
        };
        for (i, &(quants, steps, isums, sums)) in rows.iter().enumerate() {
            let xq = &quants[b];
            let step = _mm512_set1_ps(steps[b]);
            let is = isums[b];
            if H {
                let c = match A {
                    true => [0, 0],
                    false => [-t.offset * is[0], -t.offset * is[1]],
                };
                let mut p = [_mm512_set1_epi32(c[0]), _mm512_set1_epi32(c[1])];
                for j in 0..8 {
                    p[j / 4] = _mm512_dpbusd_epi32(p[j / 4], w[j], word(xq, j));
                }
                for h in 0..2 {
                    let scale = _mm512_mul_ps(d[h], step);
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[h]), scale, acc[i]);
                    if A {
                        acc[i] = _mm512_fmadd_ps(mn[h], _mm512_set1_ps(sums[b][h]), acc[i]);
                    }
                }
            } else {
                let c = match A {
                    true => 0,
                    false => -t.offset * (is[0] + is[1]),
                };
                // Two chains of four: consecutive `vpdpbusd` need not wait on each other.
                let mut p = [_mm512_set1_epi32(c), _mm512_setzero_si512()];
                for j in 0..8 {
                    p[j & 1] = _mm512_dpbusd_epi32(p[j & 1], w[j], word(xq, j));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(p[0], p[1]));
                acc[i] = _mm512_fmadd_ps(dot, _mm512_mul_ps(d[0], step), acc[i]);
                if A {
                    let s = _mm512_set1_ps(sums[b][0] + sums[b][1]);
                    acc[i] = _mm512_fmadd_ps(mn[0], s, acc[i]);
                }
            }
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` holds sixteen f32.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}
