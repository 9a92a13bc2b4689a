//! The panel kernel in NEON, which every aarch64 CPU has: each 64-byte word of a block is
//! four 128-bit vectors of four rows. Without the dot-product extension (its intrinsics are
//! not stable Rust yet), a word's four products per row are `vmull_s8` into i16 (at most
//! 128·127 each), pairs summed by `vpaddq_s16` (at most 2·128·127, still an i16) and widened
//! into the row's i32 lane by `vpadalq_s16`. Weights go in signed: a signed panel's bytes
//! less their offset, an affine panel's values (at most 31) as they are; so no offset
//! correction is needed. One activation row at a time: a baseline that is exact and
//! unit-tested under emulation, not yet tuned on an ARM machine.

use std::arch::aarch64::*;

use super::{Acts, BLOCK_BYTES, LANES, TILE_ROWS, Tile};

/// Rows `i0..i0 + n` (n ≤ 8) of `acts` times the group, into `out[..n]`.
///
/// # Safety
/// The tile's slices are whole blocks of one group and `acts` has rows `i0..i0 + n` of as
/// many blocks.
pub(super) unsafe fn run(
    t: &Tile,
    acts: &Acts,
    i0: usize,
    n: usize,
    out: &mut [[f32; LANES]; TILE_ROWS],
) {
    let affine = !t.mins.is_empty();
    for (i, o) in out.iter_mut().enumerate().take(n) {
        // SAFETY: as the caller promised.
        unsafe {
            match (t.halves, affine) {
                (false, false) => kernel::<false, false>(t, acts, i0 + i, o),
                (false, true) => kernel::<false, true>(t, acts, i0 + i, o),
                (true, false) => kernel::<true, false>(t, acts, i0 + i, o),
                (true, true) => kernel::<true, true>(t, acts, i0 + i, o),
            }
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn kernel<const H: bool, const A: bool>(
    t: &Tile,
    acts: &Acts,
    row: usize,
    out: &mut [f32; LANES],
) {
    let (quants, steps, _, sums) = acts.row(row);
    let bpr = t.quants.len() / BLOCK_BYTES;
    let pb = LANES * (1 + usize::from(H));
    let offset = vdupq_n_u8(t.offset as u8);
    let span = if H { 4 } else { 8 };
    let mut acc = [vdupq_n_f32(0.0); 4];
    for b in 0..bpr {
        let qb = &t.quants[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
        for h in 0..8 / span {
            let mut p = [vdupq_n_s32(0); 4];
            for j in h * span..(h + 1) * span {
                let x = vreinterpretq_s8_s32(vdupq_n_s32(super::act::word(&quants[b], j)));
                for (v, pv) in p.iter_mut().enumerate() {
                    let at = (j * LANES + 4 * v) * 4;
                    // SAFETY: `at + 16 <= BLOCK_BYTES`: word `j` of rows `4v..4v + 4`.
                    let w = unsafe { vld1q_u8(qb[at..at + 16].as_ptr()) };
                    let w = match A {
                        true => vreinterpretq_s8_u8(w),
                        false => vreinterpretq_s8_u8(vsubq_u8(w, offset)),
                    };
                    let lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
                    let hi = vmull_high_s8(w, x);
                    *pv = vpadalq_s16(*pv, vpaddq_s16(lo, hi));
                }
            }
            let sum = match H {
                true => sums[b][h],
                false => sums[b][0] + sums[b][1],
            };
            for (v, a) in acc.iter_mut().enumerate() {
                let at = b * pb + h * LANES + 4 * v;
                // SAFETY: `at + 4 <= (b + 1) * pb`: four of this block's scales.
                let d = unsafe { vld1q_f32(t.scales[at..at + 4].as_ptr()) };
                *a = vfmaq_f32(*a, vcvtq_f32_s32(p[v]), vmulq_n_f32(d, steps[b]));
                if A {
                    // SAFETY: as `d`.
                    let mn = unsafe { vld1q_f32(t.mins[at..at + 4].as_ptr()) };
                    *a = vfmaq_n_f32(*a, mn, sum);
                }
            }
        }
    }
    for (v, a) in acc.into_iter().enumerate() {
        // SAFETY: `out[4v..4v + 4]` is in bounds.
        unsafe { vst1q_f32(out[4 * v..4 * v + 4].as_mut_ptr(), a) };
    }
}
