//! Weights re-laid for products on 8-bit activations in integers, for every batch size:
//! llama.cpp's arithmetic (activations rounded to a scale and 32 signed bytes per block), in a
//! layout for AVX-512 VNNI's `vpdpbusd` (four u8 × i8 products summed into each 32-bit lane).
//!
//! Sixteen weight rows are interleaved per block of 32 values: word `j` of a block (values
//! `4j..4j+4`) of the sixteen rows is one 64-byte vector, so one `vpdpbusd` multiplies it by
//! four activations broadcast to every lane, and the lanes stay the sixteen output rows: a
//! block of sixteen rows times one activation row is eight instructions, its scale one FMA,
//! and no horizontal sums are ever needed. Against the f32 register tiles that is about a
//! third of the instructions per product (docs/benchmarks.md, "8-bit products"). Without
//! VNNI, AVX2 takes each 64-byte word as two halves of eight rows (`panel/avx2.rs`).
//!
//! Opt-in per model (`activations = "q8"`): rounding each activation costs exactness, up to
//! half its block's step (`max|x|/254`). Every quantized form but 16-bit floats takes it:
//! signed blocks (Q8_0, Q5_0; Q6_K and Q3_K with a scale per 16) as bytes `q + offset` (half
//! the type's range: 128, 16, 32, 4), whose offset is taken back exactly in integers; affine blocks (Q4_0, Q4_1, Q4_K, Q5_1, Q5_K;
//! Q2_K per 16) as their unsigned values with a scale and a minimum, the minimum times the
//! exact f32 block sum.

use rayon::prelude::*;

use super::Values;
use crate::formats::ggml::GgmlType;
use crate::kernels::pools;

mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;
pub(super) use act::Acts;

/// Weight rows interleaved per block: the lanes of a 512-bit vector of i32.
pub(super) const LANES: usize = 16;
/// Bytes of one block of `LANES` rows.
const BLOCK_BYTES: usize = LANES * 32;
/// Activation rows multiplied per pass over a group's blocks: the tile's accumulators.
const TILE_ROWS: usize = 8;
/// Activation rows whose rounded blocks stay in L2 while a work item's weights pass again.
const ACT_ROWS_PER_PASS: usize = 64;
/// Weight blocks per parallel work item (a hand-off costs about a microsecond).
const BLOCKS_PER_ITEM: usize = 2048;

/// A matrix as interleaved 8-bit panels.
pub(super) struct Panel {
    rows: usize,
    cols: usize,
    /// Two scales (and minimums) per block, one per 16 values.
    halves: bool,
    /// `value = d·q + m` with the minimums in `mins`; otherwise `value = d·(q − offset)`.
    affine: bool,
    offset: i32,
    /// Per group of `LANES` rows and block: word `j` of lane `l` at `(j·LANES + l)·4`.
    quants: Vec<u8>,
    /// Per group and block: `LANES` scales, or two runs of them (`halves`).
    scales: Vec<f32>,
    /// As `scales`, when `affine`.
    mins: Vec<f32>,
}

/// One group of sixteen rows' blocks, as a SIMD kernel takes them.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
struct Tile<'a> {
    quants: &'a [u8],
    scales: &'a [f32],
    /// Empty unless the panel is affine.
    mins: &'a [f32],
    offset: i32,
    halves: bool,
}

/// One block of one row in panel terms.
struct BlockParts {
    q: [u8; 32],
    d: [f32; 2],
    m: [f32; 2],
}

/// Whether a form is kept affine (a real minimum) and whether its scales cover 16 values;
/// `None` for the forms without an integer kernel (16-bit and 32-bit floats).
fn kind(v: &Values) -> Option<(bool, bool)> {
    match v {
        Values::Q4_1 { .. } | Values::U8Affine { .. } => Some((true, false)),
        Values::U8Affine16 { .. } => Some((true, true)),
        Values::Q8_0 { .. } => Some((false, false)),
        Values::Q8x16 { .. } => Some((false, true)),
        Values::Half { .. } | Values::F32(_) | Values::Panel(_) => None,
    }
}

/// The offset a signed type's values are stored with: half its range, so the bytes stay
/// below 128 where the type allows (what AVX2's `vpmaddubsw` needs to multiply them without
/// saturating); Q8_0's full bytes take 128.
fn signed_offset(ty: GgmlType) -> i32 {
    match ty {
        GgmlType::Q3_K => 4,
        GgmlType::Q5_0 => 16,
        GgmlType::Q6_K => 32,
        _ => 128,
    }
}

/// Block `i` of a form that [`kind`] accepts; signed values stored as `q + offset`.
fn parts(v: &Values, i: usize, offset: i32) -> BlockParts {
    let signed = |q: &[i8; 32]| q.map(|v| (i32::from(v) + offset) as u8);
    match v {
        Values::Q4_1 { scales, quants } => {
            let mut q = [0u8; 32];
            for (j, &byte) in quants[i].iter().enumerate() {
                q[j] = byte & 0x0f;
                q[j + 16] = byte >> 4;
            }
            let [d, m] = scales[i];
            BlockParts {
                q,
                d: [d; 2],
                m: [m; 2],
            }
        }
        Values::U8Affine { scales, quants } => {
            let [d, m] = scales[i];
            BlockParts {
                q: quants[i],
                d: [d; 2],
                m: [m; 2],
            }
        }
        Values::U8Affine16 { scales, quants } => {
            let [d0, m0, d1, m1] = scales[i];
            BlockParts {
                q: quants[i],
                d: [d0, d1],
                m: [m0, m1],
            }
        }
        Values::Q8_0 { scales, quants } => BlockParts {
            q: signed(&quants[i]),
            d: [scales[i]; 2],
            m: [0.0; 2],
        },
        Values::Q8x16 { scales, quants } => BlockParts {
            q: signed(&quants[i]),
            d: scales[i],
            m: [0.0; 2],
        },
        Values::Half { .. } | Values::F32(_) | Values::Panel(_) => BlockParts {
            q: [0; 32],
            d: [0.0; 2],
            m: [0.0; 2],
        },
    }
}

/// Whether this CPU has a SIMD panel kernel (AVX-512 with VNNI, AVX2 with FMA, or NEON);
/// elsewhere a model asking for 8-bit products keeps the exact forms.
pub(super) fn fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::available() || avx2::available();
    #[cfg(target_arch = "aarch64")]
    return true;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    false
}

impl Panel {
    /// `[rows, cols]` of GGUF type `ty` from its bytes (whole blocks, checked by the caller),
    /// re-laid sixteen rows at a time so only one group's exact form exists at once; `None`
    /// for the types without an integer kernel.
    pub(super) fn from_blocks(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Option<Self> {
        let (per_block, block_bytes) = ty.block();
        let row_bytes = cols / per_block * block_bytes;
        let bpr = cols / 32;
        if !cols.is_multiple_of(32) {
            return None;
        }
        let groups = rows.div_ceil(LANES);
        let mut p: Option<Panel> = None;
        for g in 0..groups {
            let n = LANES.min(rows - g * LANES);
            let part = &bytes[g * LANES * row_bytes..(g * LANES + n) * row_bytes];
            let v = super::repack::values(ty, n, cols, part);
            let (affine, halves) = kind(&v)?;
            let p = p.get_or_insert_with(|| Panel {
                rows,
                cols,
                halves,
                affine,
                offset: if affine { 0 } else { signed_offset(ty) },
                quants: Vec::with_capacity(groups * bpr * BLOCK_BYTES),
                scales: Vec::with_capacity(groups * bpr * LANES * (1 + usize::from(halves))),
                mins: Vec::new(),
            });
            for b in 0..bpr {
                let blocks: Vec<BlockParts> = (0..LANES)
                    .map(|l| match l < n {
                        true => parts(&v, l * bpr + b, p.offset),
                        // Rows past the end: zero scales, so their lanes compute zeros.
                        false => BlockParts {
                            q: [0; 32],
                            d: [0.0; 2],
                            m: [0.0; 2],
                        },
                    })
                    .collect();
                for j in 0..8 {
                    for bp in &blocks {
                        p.quants.extend_from_slice(&bp.q[4 * j..4 * j + 4]);
                    }
                }
                for h in 0..1 + usize::from(halves) {
                    p.scales.extend(blocks.iter().map(|bp| bp.d[h]));
                    if affine {
                        p.mins.extend(blocks.iter().map(|bp| bp.m[h]));
                    }
                }
            }
        }
        p
    }

    pub(super) fn bytes(&self) -> usize {
        self.quants.len() + 4 * (self.scales.len() + self.mins.len())
    }

    fn bpr(&self) -> usize {
        self.cols / 32
    }

    /// Scales (or minimums) per block of a group.
    fn per_block(&self) -> usize {
        LANES * (1 + usize::from(self.halves))
    }

    /// Row `r` as f32 values: the same products of scales and integers as the exact form.
    pub(super) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, l) = (r / LANES, r % LANES);
        let bpr = self.bpr();
        for (b, dst) in out.chunks_exact_mut(32).enumerate().take(bpr) {
            let i = g * bpr + b;
            for (k, o) in dst.iter_mut().enumerate() {
                let q = self.quants[i * BLOCK_BYTES + (k / 4 * LANES + l) * 4 + k % 4];
                let s = i * self.per_block() + usize::from(self.halves) * (k / 16) * LANES + l;
                let d = self.scales[s];
                *o = match self.affine {
                    true => d * f32::from(q) + self.mins[s],
                    false => d * (i32::from(q) - self.offset) as f32,
                };
            }
        }
    }

    /// `out[m × rows] = x[m × cols] · Wᵀ` on activations rounded to 8 bits, on the current
    /// rayon pool: groups of rows split across its threads.
    pub(super) fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_acts(&Acts::new(x, m, self.cols), m, out);
    }

    /// [`Panel::matmul`] on activations already rounded.
    fn matmul_acts(&self, acts: &Acts, m: usize, out: &mut [f32]) {
        let bpr = self.bpr().max(1);
        let groups = self.rows.div_ceil(LANES);
        // Items of about BLOCKS_PER_ITEM blocks, and at least a few per thread: a batch
        // makes each group's work m times longer, and a small matrix has few groups.
        let spread = groups.div_ceil(4 * rayon::current_num_threads());
        let per_item = (BLOCKS_PER_ITEM / bpr).min(spread).max(1);
        let chunk = per_item * LANES;
        if m == 1 {
            out.par_chunks_mut(chunk).enumerate().for_each(|(c, dst)| {
                pools::yield_to_live();
                self.fill(acts, c * per_item, groups, &mut [dst]);
            });
            return;
        }
        // Each item writes its run of output rows in every activation row's part of `out`.
        let mut pieces: Vec<Vec<&mut [f32]>> = (0..self.rows.div_ceil(chunk))
            .map(|_| Vec::with_capacity(m))
            .collect();
        for row in out.chunks_mut(self.rows) {
            for (c, piece) in row.chunks_mut(chunk).enumerate() {
                pieces[c].push(piece);
            }
        }
        pieces.into_par_iter().enumerate().for_each(|(c, mut dst)| {
            pools::yield_to_live();
            self.fill(acts, c * per_item, groups, &mut dst);
        });
    }

    /// Groups `first..` (as many as `dst`'s rows span, up to `groups`) times every activation
    /// row; `dst[i]` is activation row `i`'s part of the output, from group `first`'s row on.
    fn fill(&self, acts: &Acts, first: usize, groups: usize, dst: &mut [&mut [f32]]) {
        let Some(len) = dst.first().map(|d| d.len()) else {
            return;
        };
        let last = groups.min(first + len.div_ceil(LANES));
        let bpr = self.bpr();
        let pb = self.per_block();
        for a0 in (0..dst.len()).step_by(ACT_ROWS_PER_PASS) {
            let a_end = dst.len().min(a0 + ACT_ROWS_PER_PASS);
            for g in first..last {
                let q = &self.quants[g * bpr * BLOCK_BYTES..(g + 1) * bpr * BLOCK_BYTES];
                let s = &self.scales[g * bpr * pb..(g + 1) * bpr * pb];
                let mn = match self.affine {
                    true => &self.mins[g * bpr * pb..(g + 1) * bpr * pb],
                    false => &[][..],
                };
                let lo = (g - first) * LANES;
                let hi = len.min(lo + LANES);
                for i0 in (a0..a_end).step_by(TILE_ROWS) {
                    let n = TILE_ROWS.min(a_end - i0);
                    let mut out = [[0f32; LANES]; TILE_ROWS];
                    self.tile(q, s, mn, acts, i0, n, &mut out);
                    for (i, vals) in out.iter().enumerate().take(n) {
                        dst[i0 + i][lo..hi].copy_from_slice(&vals[..hi - lo]);
                    }
                }
            }
        }
    }

    /// One group's blocks (`q`, `s`, `mn`) times activation rows `i0..i0 + n` (n ≤ 8).
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        q: &[u8],
        s: &[f32],
        mn: &[f32],
        acts: &Acts,
        i0: usize,
        n: usize,
        out: &mut [[f32; LANES]; TILE_ROWS],
    ) {
        let t = Tile {
            quants: q,
            scales: s,
            mins: mn,
            offset: self.offset,
            halves: self.halves,
        };
        // SAFETY (every kernel): `q`, `s` and `mn` are one group's whole blocks, `acts` holds
        // rows `i0..i0 + n` of as many blocks; each runs only where the CPU has its features.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            // NEON is every aarch64 CPU's.
            neon::run(&t, acts, i0, n, out)
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            #[cfg(target_arch = "x86_64")]
            if x86::available() {
                // AVX-512 F, BW and VNNI.
                return unsafe { t.run(acts, i0, n, out) };
            } else if avx2::available() {
                return unsafe { avx2::run(&t, acts, i0, n, out) };
            }
            let _ = t;
            self.tile_portable(q, s, mn, acts, i0, n, out);
        }
    }

    /// [`Panel::tile`] in plain Rust: any CPU, and the reference the tests hold the SIMD
    /// kernels against.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(all(target_arch = "aarch64", not(test)), allow(dead_code))]
    pub(super) fn tile_portable(
        &self,
        q: &[u8],
        s: &[f32],
        mn: &[f32],
        acts: &Acts,
        i0: usize,
        n: usize,
        out: &mut [[f32; LANES]; TILE_ROWS],
    ) {
        let pb = self.per_block();
        for (i, o) in out.iter_mut().enumerate().take(n) {
            let (quants, steps, isums, sums) = acts.row(i0 + i);
            for b in 0..self.bpr() {
                let (xq, step) = (&quants[b], steps[b]);
                for (l, acc) in o.iter_mut().enumerate() {
                    let mut dots = [0i32; 2];
                    for k in 0..32 {
                        let w = i32::from(q[b * BLOCK_BYTES + (k / 4 * LANES + l) * 4 + k % 4]);
                        dots[k / 16] += w * i32::from(xq[k]);
                    }
                    let (isums, sums) = (isums[b], sums[b]);
                    for h in 0..2 {
                        let si = b * pb + usize::from(self.halves) * h * LANES + l;
                        let dot = match self.affine {
                            true => dots[h],
                            false => dots[h] - self.offset * isums[h],
                        };
                        *acc += dot as f32 * (s[si] * step);
                        if self.affine {
                            *acc += mn[si] * sums[h];
                        }
                    }
                }
            }
        }
    }
}

impl super::QMatrix {
    /// `outs[i] = x · Wᵢᵀ` for matrices fed the same `m` rows (q, k and v; gate and up): when
    /// they are all panels of one width, the activations are rounded once for all of them.
    pub fn matmul_each(x: &[f32], m: usize, each: &mut [(&super::QMatrix, &mut [f32])]) {
        let cols = each.first().map_or(0, |(w, _)| w.cols);
        let panels: Option<Vec<&Panel>> = each
            .iter()
            .map(|(w, _)| match &w.values {
                Values::Panel(p) if w.cols == cols => Some(&**p),
                _ => None,
            })
            .collect();
        match panels {
            Some(panels) => {
                let acts = Acts::new(x, m, cols);
                for (p, (_, out)) in panels.into_iter().zip(each.iter_mut()) {
                    p.matmul_acts(&acts, m, out);
                }
            }
            None => each.iter_mut().for_each(|(w, out)| w.matmul(x, m, out)),
        }
    }
}

#[cfg(test)]
mod tests;
