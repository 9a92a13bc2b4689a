//! Weights kept as GGUF stores them (Q4_1, Q8_0 blocks, or f32) and multiplied without ever
//! being expanded as a whole: the CPU path reads ~97 MB per token for SmolLM2 instead of the
//! ~538 MB its f32 copy would take, and memory bandwidth is what bounds decoding.
//!
//! Activations stay f32 (no Q8 activation quantization), so results match f32 math on the
//! dequantized weights up to summation order, and the golden tolerances of the f32 path hold.
//!
//! At load the blocks are split into their parts: f32 scales (and Q4_1 minimums) in one
//! array, the quantized values in another, so the kernels never convert f16 on the hot path.
//!
//! Three kernels, picked by the number of activation rows:
//! - 1 or 2 rows (decode): each weight block is widened to f32 in registers, multiplied
//!   with the rows, and scaled after (`d·(q·x) + m·Σx`): the fewest instructions per block
//!   for a pass that memory bandwidth bounds anyway;
//! - 3 to 16 rows (batched decode): each block is dequantized (`d·q + m`) in registers once
//!   and multiplied into a group of rows that stays in L1; each work item takes its run of
//!   weight rows through every group, so a step reads the weights from memory once;
//!   with AVX-512VL (32 vector registers), from 8 rows and up to 32, two weight rows at a
//!   time meet eight activation rows in a register tile: each block dequantized once for
//!   both, each activation vector loaded once for both weight rows (1.6× the GFLOP/s of one
//!   weight row at a time at 16 rows);
//! - more rows (prefill): a tile of weight rows is dequantized into an f32 buffer once and
//!   multiplied with all activation rows by `gemm`.
//!
//! The first two use AVX2 + FMA when the CPU has them and a portable loop otherwise; weight
//! rows are split across the threads of the current rayon pool.

use rayon::prelude::*;

use crate::error::CoreError;
use crate::formats::ggml::GgmlType;
use crate::formats::gguf::Gguf;
use crate::kernels::pools;

mod panel;
mod portable;
mod q8act;
mod repack;
use repack::half_to_f32;
use std::sync::atomic::Ordering::Relaxed;

/// Activation rows up to which the fused kernel is used: measured on this project's 2-core
/// machine (`cargo run --release --example kernels`), the tiled kernel wins from about 16 rows
/// since its dequantization is vectorised.
const FUSED_MAX_ROWS: usize = 16;
/// The tile kernels' shape: weight rows by activation rows (measured with
/// `cargo run --release --example kernels`: 2 × 8 beat 3 × 4, 4 × 4, 3 × 8, 2 × 16).
const TILE_R: usize = 2;
const TILE_M: usize = 8;
/// Up to how many activation rows the tile kernels beat dequantizing into tiles for gemm.
const TILE_MAX_ROWS: usize = 32;

/// From now on, the CPU path uses only what an AVX2-only machine has (its AVX-512VL register
/// tiles unused) when `on`: to measure here what such a machine gets (`kernels --avx2`).
pub fn avx2_only(on: bool) {
    #[cfg(target_arch = "x86_64")]
    simd::WIDE_ALLOWED.store(!on, Relaxed);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = on;
}

fn tiles_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return simd::wide_available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The tiles for 16-bit floats also need F16C.
fn half_tiles_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return simd::f16c_available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Fewest weight rows per parallel work item in the fused kernel.
const FUSED_CHUNK: usize = 32;
/// Weight blocks per parallel work item in the fused kernel.
const BLOCKS_PER_ITEM: usize = 2048;
/// Weight rows dequantized per tile in the tiled kernel (256 × 576 f32 ≈ 590 KB: L2-sized).
const TILE_ROWS: usize = 256;
/// Bytes of activation rows the fused kernel keeps in L1 while the weights stream past.
const FUSED_L1_BYTES: usize = 24 * 1024;

/// Activation rows the fused kernel multiplies per pass over the weights: up to 8 (its
/// registers), fewer for wide matrices so the rows stay in L1.
fn fused_group(cols: usize) -> usize {
    (FUSED_L1_BYTES / (cols * 4)).clamp(SCALED_MAX_ROWS + 1, 8)
}

/// How a matrix's values are kept.
enum Values {
    /// Per block `d, m` (value = d·q + m); 16 bytes of nibbles per block, low nibbles first.
    Q4_1 {
        scales: Vec<[f32; 2]>,
        quants: Vec<[u8; 16]>,
    },
    /// Per block `d` (value = d·q); 32 signed bytes per block.
    Q8_0 {
        scales: Vec<f32>,
        quants: Vec<[i8; 32]>,
    },
    /// Per block two scales, one per 16 values (value = d·q); 32 signed bytes per block: Q6_K
    /// and Q3_K, whose scales cover runs of 16.
    Q8x16 {
        scales: Vec<[f32; 2]>,
        quants: Vec<[i8; 32]>,
    },
    /// Per block `d, m` (value = d·q + m); 32 unsigned bytes per block: Q5_1 and Q5_K.
    U8Affine {
        scales: Vec<[f32; 2]>,
        quants: Vec<[u8; 32]>,
    },
    /// Per block `d, m` for each run of 16 (`[d₀, m₀, d₁, m₁]`, value = d·q + m); 32
    /// unsigned bytes per block: Q2_K, whose scales and minimums cover runs of 16.
    U8Affine16 {
        scales: Vec<[f32; 4]>,
        quants: Vec<[u8; 32]>,
    },
    /// 16-bit floats as stored (F16, or BF16 when `brain`), row-major: half the bytes of f32.
    Half { bits: Vec<u16>, brain: bool },
    /// Plain values.
    F32(Vec<f32>),
    /// Sixteen rows interleaved for products on 8-bit activations ([`panel`]).
    Panel(Box<panel::Panel>),
}

/// What a matrix is multiplied with: f32 activations (exact against f32 math on its
/// weights), or activations rounded to 8 bits in integer products, llama.cpp's arithmetic
/// ([`panel`]: faster at every batch size, less exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activations {
    #[default]
    F32,
    Q8,
}

/// Whether this CPU has the integer kernels that [`Activations::Q8`] needs (AVX-512 VNNI, or
/// AVX2 with FMA); without them a matrix asked for it keeps its exact form.
pub fn q8_products_available() -> bool {
    panel::fast()
}

/// A `[rows, cols]` weight matrix, row-major, in its GGUF precision.
pub struct QMatrix {
    rows: usize,
    cols: usize,
    values: Values,
    /// One-row products round the activations to 8 bits ([`q8act`]).
    q8_decode: std::sync::atomic::AtomicBool,
}

impl QMatrix {
    /// The GGUF tensor `name` (GGML dims `[cols, rows]`).
    pub fn from_gguf(g: &Gguf, name: &str) -> Result<Self, CoreError> {
        Self::from_gguf_as(g, name, Activations::F32)
    }

    /// The GGUF tensor `name`, laid out for products on `acts`.
    pub fn from_gguf_as(g: &Gguf, name: &str, acts: Activations) -> Result<Self, CoreError> {
        let info = g.tensor(name)?;
        let [cols, rows] = match info.dims[..] {
            [c, r] => [c as usize, r as usize],
            _ => return Err(CoreError::Weights(format!("tensor {name} is not a matrix"))),
        };
        Self::from_blocks_as(info.ty, rows, cols, g.tensor_bytes(name)?, acts)
            .map_err(|e| CoreError::Weights(format!("tensor {name}: {e}")))
    }

    /// Rows `start..start + rows` of the GGUF tensor `name`: one part of a fused matrix
    /// (Phi-3's `attn_qkv`, its gate and up in `ffn_up`).
    pub fn from_gguf_rows(
        g: &Gguf,
        name: &str,
        start: usize,
        rows: usize,
    ) -> Result<Self, CoreError> {
        Self::from_gguf_rows_as(g, name, start, rows, Activations::F32)
    }

    /// As [`QMatrix::from_gguf_rows`], laid out for products on `acts`.
    pub fn from_gguf_rows_as(
        g: &Gguf,
        name: &str,
        start: usize,
        rows: usize,
        acts: Activations,
    ) -> Result<Self, CoreError> {
        let info = g.tensor(name)?;
        let weights = |why: String| CoreError::Weights(format!("tensor {name}: {why}"));
        let [cols, total] = match info.dims[..] {
            [c, r] => [c as usize, r as usize],
            _ => return Err(weights("not a matrix".into())),
        };
        let (per_block, block_bytes) = info.ty.block();
        if start + rows > total || !cols.is_multiple_of(per_block) {
            return Err(weights(format!(
                "rows {start}..{} of {total} × {cols} are not whole {} rows",
                start + rows,
                info.ty.name()
            )));
        }
        let row_bytes = cols / per_block * block_bytes;
        let bytes = g.tensor_bytes(name)?;
        let part = bytes
            .get(start * row_bytes..(start + rows) * row_bytes)
            .ok_or_else(|| weights("shorter than its shape".into()))?;
        Self::from_blocks_as(info.ty, rows, cols, part, acts).map_err(weights)
    }

    /// A `[rows, cols]` matrix from its GGUF bytes of type `ty`; the error says why not.
    pub fn from_blocks(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self, String> {
        Self::from_blocks_as(ty, rows, cols, bytes, Activations::F32)
    }

    /// As [`QMatrix::from_blocks`], laid out for products on `acts`.
    pub fn from_blocks_as(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        acts: Activations,
    ) -> Result<Self, String> {
        let (per_block, block_bytes) = ty.block();
        if !cols.is_multiple_of(per_block) || bytes.len() != rows * cols / per_block * block_bytes {
            return Err(format!(
                "a {} matrix of {rows} × {cols} is not {} whole blocks",
                ty.name(),
                rows * cols / per_block.max(1)
            ));
        }
        let panel = match acts {
            Activations::Q8 if panel::fast() => panel::Panel::from_blocks(ty, rows, cols, bytes),
            _ => None,
        };
        let values = match panel {
            Some(p) => Values::Panel(Box::new(p)),
            None => repack::values(ty, rows, cols, bytes),
        };
        Ok(QMatrix {
            rows,
            cols,
            values,
            q8_decode: false.into(),
        })
    }

    /// Whether one-row products (decode) round the activations to 8 bits and multiply in
    /// integers: faster, at an exactness cost ([`q8act`]); Q4_1 and Q8_0 blocks only.
    pub fn set_q8_decode(&self, on: bool) {
        self.q8_decode.store(on, Relaxed);
    }

    /// Whether products round activations to 8 bits whatever the batch ([`Activations::Q8`]
    /// on a CPU that has its kernels, for a type that has them).
    pub fn q8_products(&self) -> bool {
        matches!(self.values, Values::Panel(_))
    }

    /// Bytes the matrix takes in memory: what one pass over it reads.
    pub fn resident_bytes(&self) -> usize {
        self.values.bytes()
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `out[m × rows] = x[m × cols] · Wᵀ`, on the current rayon pool.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), m * self.cols);
        debug_assert_eq!(out.len(), m * self.rows);
        if let Values::Panel(p) = &self.values {
            p.matmul(x, m, out);
        } else if m == 1 && self.q8_decode.load(Relaxed) && q8act::supported(self) {
            q8act::matvec(self, x, out, q8act::chunk(self.cols));
        } else if m <= FUSED_MAX_ROWS || self.uses_tiles(m) {
            self.matmul_fused(x, m, out);
        } else {
            self.matmul_tiled(x, m, out);
        }
    }

    /// Whether this matrix's SIMD kernels can run here (16-bit floats need F16C too).
    #[cfg(target_arch = "x86_64")]
    fn simd_ready(&self) -> bool {
        simd::available() && (!matches!(self.values, Values::Half { .. }) || simd::f16c_available())
    }

    /// Whether `m` activation rows go through the register tiles ([`QMatrix::fill_tiles`]).
    fn uses_tiles(&self, m: usize) -> bool {
        (TILE_M..=TILE_MAX_ROWS).contains(&m)
            && match self.values {
                Values::F32(_) | Values::Panel(_) => false,
                // Whole blocks of 32 only; converted with F16C.
                Values::Half { .. } => self.cols.is_multiple_of(32) && half_tiles_available(),
                _ => true,
            }
            && tiles_available()
    }

    fn matmul_fused(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let cols = self.cols;
        #[cfg(target_arch = "x86_64")]
        let tiles = self.uses_tiles(m);
        // Activation rows go through the kernel a group at a time, small enough to stay in
        // L1 while weight rows pass. Each work item takes a run of weight rows through every
        // group in turn, so a batch reads the weights from memory once (they are in L2 for
        // the later groups), not once per group.
        let group = fused_group(cols);
        // Per activation row and block, the sum of its values: Q4_1's minimum term in the
        // scale-after kernels.
        #[cfg_attr(not(target_arch = "x86_64"), allow(clippy::absurd_extreme_comparisons))]
        let scaled = m <= SCALED_MAX_ROWS;
        let sums: Vec<f32> = if scaled {
            x.chunks_exact(32).map(|b| b.iter().sum()).collect()
        } else {
            Vec::new()
        };
        // Work items of about BLOCKS_PER_ITEM blocks: a hand-off costs about a microsecond,
        // as much as a few dozen short rows of work at decode.
        // A whole number of tiles' weight rows, so no item leaves a row to the slow path.
        let chunk = (BLOCKS_PER_ITEM / (cols / 32).max(1))
            .max(FUSED_CHUNK)
            .next_multiple_of(TILE_R);
        let fill = |(c, dst): (usize, &mut [f32])| {
            pools::yield_to_live();
            let first = c * chunk;
            let n_rows = dst.len() / m;
            #[cfg(target_arch = "x86_64")]
            if tiles {
                self.fill_tiles(first, n_rows, x, m, dst);
                return;
            }
            for g in (0..m).step_by(group) {
                let n = group.min(m - g);
                let xs = &x[g * cols..(g + n) * cols];
                let ss = if sums.is_empty() {
                    &sums[..]
                } else {
                    &sums[g * cols / 32..]
                };
                for k in 0..n_rows {
                    self.row_times(first + k, xs, n, ss, &mut dst[k * m + g..k * m + g + n]);
                }
            }
        };
        if m == 1 {
            out.par_chunks_mut(chunk).enumerate().for_each(fill);
            return;
        }
        // Each work item computes its run of weight rows as `[run × m]` and writes it into
        // `out`'s `[m × rows]` itself: the transposition happens on the workers, in cache,
        // not afterwards on one thread.
        let mut pieces: Vec<Vec<&mut [f32]>> = (0..self.rows.div_ceil(chunk))
            .map(|_| Vec::with_capacity(m))
            .collect();
        for row in out.chunks_mut(self.rows) {
            for (c, piece) in row.chunks_mut(chunk).enumerate() {
                pieces[c].push(piece);
            }
        }
        pieces
            .into_par_iter()
            .enumerate()
            .for_each(|(c, mut slices)| {
                let run = slices.first().map_or(0, |s| s.len());
                let mut dst = vec![0f32; run * m];
                fill((c, &mut dst));
                for (k, vals) in dst.chunks_exact(m).enumerate() {
                    for (slice, v) in slices.iter_mut().zip(vals) {
                        slice[k] = *v;
                    }
                }
            });
    }

    /// A work item (weight rows `first..first + n_rows`, all `m` activation rows, `dst` as
    /// `[n_rows × m]`) through the tile kernels: `TILE_M` activation rows at a time, `TILE_R`
    /// weight rows at a time; leftover rows of either kind through [`QMatrix::row_times`].
    /// Only for batches that [`QMatrix::uses_tiles`].
    #[cfg(target_arch = "x86_64")]
    fn fill_tiles(&self, first: usize, n_rows: usize, x: &[f32], m: usize, dst: &mut [f32]) {
        const R: usize = TILE_R;
        const M: usize = TILE_M;
        let cols = self.cols;
        let bpr = cols / 32;
        for g in (0..m).step_by(M) {
            let n = M.min(m - g);
            let xs = &x[g * cols..(g + n) * cols];
            let mut k = 0;
            while n == M && k + R <= n_rows {
                let blocks = (first + k) * bpr..(first + k + R) * bpr;
                let mut out = [[0f32; M]; R];
                // SAFETY: AVX-512VL is present; the blocks are R whole rows; `xs` is M rows.
                unsafe {
                    match &self.values {
                        Values::Q4_1 { scales, quants } => simd::q4_1_tile::<R, M>(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            bpr,
                            xs,
                            &mut out,
                        ),
                        Values::Q8_0 { scales, quants } => simd::q8_0_tile::<R, M>(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            bpr,
                            xs,
                            &mut out,
                        ),
                        Values::Q8x16 { scales, quants } => simd::q8x16_tile::<R, M>(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            bpr,
                            xs,
                            &mut out,
                        ),
                        Values::U8Affine { scales, quants } => simd::u8_affine_tile::<R, M>(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            bpr,
                            xs,
                            &mut out,
                        ),
                        Values::U8Affine16 { scales, quants } => simd::u8_affine16_tile::<R, M>(
                            &scales[blocks.clone()],
                            &quants[blocks],
                            bpr,
                            xs,
                            &mut out,
                        ),
                        Values::Half { bits, brain } => simd::half_tile::<R, M>(
                            &bits[(first + k) * cols..(first + k + R) * cols],
                            *brain,
                            bpr,
                            xs,
                            &mut out,
                        ),
                        // Never asked: `uses_tiles` is false for them.
                        Values::F32(_) | Values::Panel(_) => {}
                    }
                }
                for (r, vals) in out.iter().enumerate() {
                    dst[(k + r) * m + g..(k + r) * m + g + M].copy_from_slice(vals);
                }
                k += R;
            }
            for k in k..n_rows {
                self.row_times(first + k, xs, n, &[], &mut dst[k * m + g..k * m + g + n]);
            }
        }
    }

    /// Weight row `r` times each of the `m` (at most 8) activation rows in `x`, into `dst[m]`;
    /// `sums` holds the block sums of `x` when the whole batch takes the scale-after kernels
    /// (`m ≤ SCALED_MAX_ROWS`), and is empty otherwise.
    fn row_times(&self, r: usize, x: &[f32], m: usize, sums: &[f32], dst: &mut [f32]) {
        #[cfg(not(target_arch = "x86_64"))]
        let _ = sums; // only the x86 kernels take the sums
        #[cfg(target_arch = "x86_64")]
        if self.simd_ready() {
            let bpr = self.cols / 32;
            let blocks = r * bpr..(r + 1) * bpr;
            // The caller computed sums exactly when the batch is small enough for these.
            let scaled = !sums.is_empty();
            // SAFETY: AVX2 and FMA are present; `x` holds `m` (≤ 8) rows of `cols` values,
            // `sums` `m` rows of `bpr` sums when `scaled`, `dst` `m` values: what the kernels
            // read.
            unsafe {
                match &self.values {
                    Values::Q4_1 { scales, quants } => {
                        let (s, q) = (&scales[blocks.clone()], &quants[blocks]);
                        if scaled {
                            simd::q4_1_scaled_rows(m, s, q, x, sums, dst);
                        } else {
                            simd::q4_1_rows(m, s, q, x, dst);
                        }
                    }
                    Values::Q8_0 { scales, quants } => {
                        let (s, q) = (&scales[blocks.clone()], &quants[blocks]);
                        if scaled {
                            simd::q8_0_scaled_rows(m, s, q, x, dst);
                        } else {
                            simd::q8_0_rows(m, s, q, x, dst);
                        }
                    }
                    // Two scales per block: dequantized first, for any row count.
                    Values::Q8x16 { scales, quants } => {
                        simd::q8x16_rows(m, &scales[blocks.clone()], &quants[blocks], x, dst);
                    }
                    Values::U8Affine { scales, quants } => {
                        simd::u8_affine_rows(m, &scales[blocks.clone()], &quants[blocks], x, dst);
                    }
                    Values::U8Affine16 { scales, quants } => {
                        let (s, q) = (&scales[blocks.clone()], &quants[blocks]);
                        simd::u8_affine16_rows(m, s, q, x, dst);
                    }
                    Values::Half { bits, brain } => {
                        let row = &bits[r * self.cols..(r + 1) * self.cols];
                        simd::half_rows(m, row, *brain, x, dst);
                    }
                    Values::F32(v) => {
                        simd::f32_rows(m, &v[r * self.cols..(r + 1) * self.cols], x, dst);
                    }
                    // Never asked: `matmul` gives panels their own kernel.
                    Values::Panel(_) => self.row_portable(r, x, m, dst),
                }
            }
            return;
        }
        self.row_portable(r, x, m, dst);
    }

    fn matmul_tiled(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let rows = self.rows;
        let cols = self.cols;
        let tiles: Vec<(usize, Vec<f32>)> = (0..rows.div_ceil(TILE_ROWS))
            .into_par_iter()
            .map(|t| {
                pools::yield_to_live();
                let start = t * TILE_ROWS;
                let n = TILE_ROWS.min(rows - start);
                let mut tile = vec![0f32; n * cols];
                for (r, dst) in tile.chunks_exact_mut(cols).enumerate() {
                    self.dequantize_row(start + r, dst);
                }
                // [m × n] block of the result, row-major.
                let mut part = vec![0f32; m * n];
                // SAFETY: the pointers and strides describe `x` ([m × cols], row-major), the
                // tile read as its transpose ([cols × n]: element (k, j) at j·cols + k) and
                // `part` ([m × n], row-major), all alive and sized for these extents.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        cols,
                        part.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        x.as_ptr(),
                        1,
                        cols as isize,
                        tile.as_ptr(),
                        cols as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                (start, part)
            })
            .collect();
        for (start, part) in tiles {
            let n = part.len() / m;
            for i in 0..m {
                out[i * rows + start..i * rows + start + n]
                    .copy_from_slice(&part[i * n..(i + 1) * n]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
use simd::SCALED_MAX_ROWS;
/// Without the x86 kernels every row count takes the portable loop.
#[cfg(not(target_arch = "x86_64"))]
const SCALED_MAX_ROWS: usize = 0;

#[cfg(test)]
mod tests;
