//! Activation rows rounded to 8 bits, once per matrix product: per block of 32, a step
//! `d = max|x| / 127` and `q = round(x / d)` (as llama.cpp's Q8_0), with the sums the panel
//! kernels need beside the products.

use rayon::prelude::*;

/// Rows of at least this many values are rounded on the pool's threads (a prefill's).
const PARALLEL_VALUES: usize = 1 << 15;

/// One activation row, rounded.
struct Row {
    quants: Vec<[i8; 32]>,
    steps: Vec<f32>,
    /// `Σq` of each half block: what takes back a signed panel's offset, in integers.
    isums: Vec<[i32; 2]>,
    /// The exact f32 sum of each half block: what an affine panel's minimums multiply.
    sums: Vec<[f32; 2]>,
}

/// A rounded row's blocks, steps, integer half sums and exact half sums.
pub(in crate::kernels::quant) type RowSlices<'a> =
    (&'a [[i8; 32]], &'a [f32], &'a [[i32; 2]], &'a [[f32; 2]]);

/// `m` activation rows of `cols` values (a whole number of blocks of 32), rounded.
pub(in crate::kernels::quant) struct Acts {
    rows: Vec<Row>,
}

impl Row {
    fn new(x: &[f32]) -> Row {
        let n = x.len() / 32;
        let mut row = Row {
            quants: Vec::with_capacity(n),
            steps: Vec::with_capacity(n),
            isums: Vec::with_capacity(n),
            sums: Vec::with_capacity(n),
        };
        for b in x.chunks_exact(32) {
            let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0i8; 32];
            for (o, v) in q.iter_mut().zip(b) {
                // Half away from zero, as `f32::round`, without its libm call; in -127..=127
                // by construction of `d`.
                let y = v * id;
                *o = (y + 0.5f32.copysign(y)) as i8;
            }
            let isum = |h: usize| q[16 * h..16 * h + 16].iter().map(|&v| i32::from(v)).sum();
            let sum = |h: usize| b[16 * h..16 * h + 16].iter().sum();
            row.isums.push([isum(0), isum(1)]);
            row.sums.push([sum(0), sum(1)]);
            row.steps.push(d);
            row.quants.push(q);
        }
        row
    }
}

impl Acts {
    pub(in crate::kernels::quant) fn new(x: &[f32], m: usize, cols: usize) -> Acts {
        let rows = if m * cols >= PARALLEL_VALUES {
            x.par_chunks(cols).map(Row::new).collect()
        } else {
            x.chunks(cols).map(Row::new).collect()
        };
        Acts { rows }
    }

    /// Row `row`'s blocks, steps and sums as slices: what the kernels walk.
    pub(in crate::kernels::quant) fn row(&self, row: usize) -> RowSlices<'_> {
        let r = &self.rows[row];
        (&r.quants, &r.steps, &r.isums, &r.sums)
    }
}

/// Values `4j..4j + 4` of a rounded block as one little-endian word: what the kernels
/// broadcast to every lane.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline]
pub(super) fn word(q: &[i8; 32], j: usize) -> i32 {
    i32::from_le_bytes([
        q[4 * j] as u8,
        q[4 * j + 1] as u8,
        q[4 * j + 2] as u8,
        q[4 * j + 3] as u8,
    ])
}
