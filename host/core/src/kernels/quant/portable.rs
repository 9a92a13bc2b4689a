//! The matmul of one weight row in plain Rust, for every kept form: what CPUs without AVX2
//! run, and what the tests hold the SIMD kernels against.

use super::{QMatrix, Values, half_to_f32};

impl QMatrix {
    /// [`QMatrix::row_times`] without SIMD intrinsics (any CPU; also checked in the tests).
    pub(super) fn row_portable(&self, r: usize, x: &[f32], m: usize, dst: &mut [f32]) {
        let cols = self.cols;
        let bpr = cols / 32;
        let blocks = r * bpr..(r + 1) * bpr;
        for (i, d) in dst.iter_mut().enumerate().take(m) {
            let xi = &x[i * cols..(i + 1) * cols];
            *d = match &self.values {
                Values::Q4_1 { scales, quants } => blocks
                    .clone()
                    .zip(xi.chunks_exact(32))
                    .map(|(b, xb)| {
                        let [d, mn] = scales[b];
                        let mut acc = 0f32;
                        for (j, &q) in quants[b].iter().enumerate() {
                            acc += (d * f32::from(q & 0x0f) + mn) * xb[j]
                                + (d * f32::from(q >> 4) + mn) * xb[j + 16];
                        }
                        acc
                    })
                    .sum(),
                Values::Q8_0 { scales, quants } => blocks
                    .clone()
                    .zip(xi.chunks_exact(32))
                    .map(|(b, xb)| {
                        quants[b]
                            .iter()
                            .zip(xb)
                            .map(|(&q, &v)| scales[b] * f32::from(q) * v)
                            .sum::<f32>()
                    })
                    .sum(),
                Values::Q8x16 { scales, quants } => blocks
                    .clone()
                    .zip(xi.chunks_exact(32))
                    .map(|(b, xb)| {
                        quants[b]
                            .iter()
                            .zip(xb)
                            .enumerate()
                            .map(|(j, (&q, &v))| scales[b][j / 16] * f32::from(q) * v)
                            .sum::<f32>()
                    })
                    .sum(),
                Values::U8Affine { scales, quants } => blocks
                    .clone()
                    .zip(xi.chunks_exact(32))
                    .map(|(b, xb)| {
                        let [d, mn] = scales[b];
                        quants[b]
                            .iter()
                            .zip(xb)
                            .map(|(&q, &v)| (d * f32::from(q) + mn) * v)
                            .sum::<f32>()
                    })
                    .sum(),
                Values::U8Affine16 { scales, quants } => blocks
                    .clone()
                    .zip(xi.chunks_exact(32))
                    .map(|(b, xb)| {
                        let s = scales[b];
                        quants[b]
                            .iter()
                            .zip(xb)
                            .enumerate()
                            .map(|(j, (&q, &v))| {
                                let h = 2 * (j / 16);
                                (s[h] * f32::from(q) + s[h + 1]) * v
                            })
                            .sum::<f32>()
                    })
                    .sum(),
                Values::Half { bits, brain } => xi
                    .iter()
                    .zip(&bits[r * cols..(r + 1) * cols])
                    .map(|(a, &b)| a * half_to_f32(b, *brain))
                    .sum(),
                Values::F32(v) => xi
                    .iter()
                    .zip(&v[r * cols..(r + 1) * cols])
                    .map(|(a, b)| a * b)
                    .sum(),
                Values::Panel(p) => {
                    let mut w = vec![0f32; cols];
                    p.dequantize_row(r, &mut w);
                    xi.iter().zip(&w).map(|(a, b)| a * b).sum()
                }
            };
        }
    }
}
